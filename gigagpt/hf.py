"""Our GPT's weights as Hugging Face's GPT2LMHeadModel names them, both ways, and `[model] init_from`.

The layers are the same; GPT-2's c_attn, c_proj and c_fc are Conv1D (weight (in, out), the transpose
of nn.Linear's), its LM head is tied to wte (a safetensors file holds wte once), and it always has
biases. Weight files are read without running code: safetensors, or pytorch_model.bin through
torch.load(weights_only=True). Errors are ConfigError lines naming the file, the tensor and the shape.
"""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import torch

from gigagpt.checkpoint import brief, why
from gigagpt.config import ConfigError, ModelConfig
from gigagpt.model import build_on_meta
from gigagpt.plan import padded_vocab

PREFIX = "transformer."  # GPT2LMHeadModel's body; GPT2Model files (the Hub's gpt2) have none
BUFFER = re.compile(r"h\.\d+\.attn\.(bias|masked_bias)")  # older files keep the causal mask
CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
LAYER = {"ln_1": "ln_1", "attn.c_attn": "attn.qkv", "attn.c_proj": "attn.proj", "ln_2": "ln_2",
         "mlp.c_fc": "mlp.fc", "mlp.c_proj": "mlp.proj"}


def name_map(n_layer: int) -> dict[str, str]:
    """GPT-2's parameter name (no prefix) -> ours. lm_head is wte in both."""
    out = {f"{n}.{p}": f"{n}.{p}" for n in ("wte", "wpe", "ln_f") for p in ("weight", "bias") if n == "ln_f" or p == "weight"}
    for i in range(n_layer):
        out.update({f"h.{i}.{hf}.{p}": f"blocks.{i}.{ours}.{p}" for hf, ours in LAYER.items() for p in ("weight", "bias")})
    return out


def transposed(hf_name: str) -> bool:
    return hf_name.endswith(".weight") and any(f".{c}." in hf_name for c in CONV1D)


def expected_shapes(m: ModelConfig) -> dict[str, tuple]:
    """GPT-2's name -> the shape our config needs (Conv1D transposed), all biases included, wte of
    vocab_size rows (GPT-2 has no padding: pad_vocab_to's rows are ours alone)."""
    real = ModelConfig(**{**vars(m), "bias": True, "pad_vocab_to": 0})
    ours = {k: tuple(v.shape) for k, v in build_on_meta(real).state_dict().items()}
    return {hf: ours[mine][::-1] if transposed(hf) else ours[mine] for hf, mine in name_map(m.n_layer).items()}


# ---------------------------------------------------------------------------- ours -> GPT-2

def to_hf(state: dict, m: ModelConfig, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel's state dict (as save_pretrained writes it: no lm_head, tied to wte) from ours.
    A model without biases gets zero biases: GPT-2 always has them, and zeros compute the same.
    wte loses its padded rows (pad_vocab_to): transformers' vocab_size is the real one."""
    out, shapes = {}, expected_shapes(m)
    for hf, mine in name_map(m.n_layer).items():
        if mine in state:
            t = state[mine].detach().to("cpu", torch.float32)
            t = t.t() if transposed(hf) else t[: m.vocab_size] if hf == "wte.weight" else t
        else:
            t = torch.zeros(shapes[hf])
        out[PREFIX + hf] = t.to(dtype).contiguous()
    return out


# ---------------------------------------------------------------------------- GPT-2 -> ours

def weight_files(directory: Path) -> list[Path]:
    """model.safetensors, the shards its index names, or pytorch_model.bin."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"{index}: not a safetensors index ({brief(e)})") from None
        bad = [s for s in shards if not isinstance(s, str) or Path(s).name != s]
        if bad:
            raise ConfigError(f"{index}: names {show_list(bad)}, not files of {directory}")
        return [directory / s for s in shards]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return [directory / name]
    raise ConfigError(f"{directory}: no model.safetensors or pytorch_model.bin (the weights of the config.json there)")


def show_list(items) -> str:
    return ", ".join(repr(x) for x in items[:3]) + (", ..." if len(items) > 3 else "")


def read_file(path: Path, shapes_only: bool) -> dict:
    """name -> tensor (or its shape) of one weight file, never running code from it."""
    if path.suffix == ".safetensors":
        try:
            from safetensors import safe_open
        except ImportError:
            raise ConfigError(f"{path}: reading it needs safetensors: pip install 'gigagpt[hf]'") from None
        try:
            with safe_open(str(path), "pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) if shapes_only else f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # noqa: BLE001 - a truncated or garbage file
            raise ConfigError(f"{path}: not a readable safetensors file ({brief(e)})") from None
    try:  # a pickle: only torch.load's weights-only unpickler may read it
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # noqa: BLE001 - refused (it would run code) or damaged
        raise ConfigError(f"{path}: {why(e)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: not a state dict of tensors (a {type(state).__name__})")
    return {k: tuple(v.shape) if shapes_only else v for k, v in state.items()}


def read_weights(directory: Path, m: ModelConfig, shapes_only: bool = False) -> dict:
    """Our GPT's state dict from a GPT-2 model directory (shapes_only: just check every name and
    shape). ConfigError for a missing, extra, misshapen or untied tensor."""
    want, found, origin = expected_shapes(m), {}, {}
    for path in weight_files(Path(directory)):
        for k, v in read_file(path, shapes_only).items():
            name = k[len(PREFIX):] if k.startswith(PREFIX) else k
            if not BUFFER.fullmatch(name):
                found[name], origin[name] = v, path
    head = found.pop("lm_head.weight", None)
    for name in found:
        if name not in want:
            raise ConfigError(f"{origin[name]}: {name}: not a tensor of a {m.n_layer}-layer GPT2LMHeadModel")
    for name, shape in want.items():
        if name not in found:
            raise ConfigError(f"{directory}: no tensor {name} (a {m.n_layer}-layer GPT2LMHeadModel has it)")
        have = found[name] if shapes_only else tuple(found[name].shape)
        crop = name == "wpe.weight" and len(have) == 2 and have[0] >= shape[0] and have[1] == shape[1]
        if have != shape and not crop:
            raise ConfigError(f"{origin[name]}: {name} has shape {list(have)}; the config.json's shape needs {list(shape)}")
    if head is not None and (tuple(head if shapes_only else head.shape) != want["wte.weight"]
                             or not shapes_only and not torch.equal(head, found["wte.weight"])):
        raise ConfigError(f"{directory}: lm_head.weight differs from wte.weight; our GPT ties them (tie_word_embeddings)")
    if shapes_only:
        return found
    state = {}
    for hf, mine in name_map(m.n_layer).items():
        t = found[hf].float()
        state[mine] = (t.t() if transposed(hf) else t[: m.block_size] if hf == "wpe.weight" else t).contiguous()
    # pad_vocab_to: zero rows past GPT-2's vocabulary (masked in our loss and logits: never used)
    state["wte.weight"] = torch.nn.functional.pad(state["wte.weight"], (0, 0, 0, padded_vocab(m) - m.vocab_size))
    state["lm_head.weight"] = state["wte.weight"]
    return state


def load_pretrained(model: torch.nn.Module, m: ModelConfig, parallel: str = "none") -> None:
    """init_from's weights into a freshly built model (an FSDP one takes each full tensor and keeps
    its shard); the run then trains from them."""
    from gigagpt.hf_source import source_dir

    state = read_weights(source_dir(m.init_from, "model.init_from"), m)
    if parallel == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))
    else:
        model.load_state_dict(state)
