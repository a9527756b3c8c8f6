"""`gigagpt export-hf RUN --out DIR`: a run's checkpoint as a Hugging Face model directory that
`transformers` loads as GPT2LMHeadModel (config.json, model.safetensors, generation_config.json),
with GPT-2's tokenizer files and a model card. Written to a temp directory and renamed into place.
The command imports torch, this module does not: its parser is built on every gigagpt start."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

from gigagpt.store.files import RunError, os_reason
from gigagpt.store.meta import printable

MARKER = ".gigagpt-export"  # what makes a directory an earlier export, to be replaced
FILES = {"config.json", "generation_config.json", "model.safetensors", "vocab.json", "merges.txt",
         "tokenizer_config.json", "special_tokens_map.json", "README.md", MARKER}
EOT, EOT_TEXT = 50256, "<|endoftext|>"


def add_export_parser(sub) -> None:
    q = sub.add_parser("export-hf", help="a run's checkpoint as a Hugging Face transformers model directory")
    q.add_argument("run", help="a run directory or a run id under the runs root")
    q.add_argument("--step", type=int, metavar="N", help="the checkpoint of step N (default: the newest that loads)")
    q.add_argument("--out", required=True, metavar="DIR",
                   help="where: a new or empty directory, or an earlier export (replaced)")
    q.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32", help="of the weights (default float32)")
    q.add_argument("--runs-root")
    q.set_defaults(func=cmd_export_hf)


def cmd_export_hf(args) -> int:
    from gigagpt.cli import find_run
    from gigagpt.store.export import check_target

    out = Path(args.out)
    check_out(out)  # before the checkpoint is read
    run_dir = find_run(args)
    check_target(out, [run_dir])  # never written into the run it reads
    ckpt, note = export(run_dir, out, args.step, args.dtype)
    print(f"exported {printable(run_dir.name)} {ckpt.name} ({args.dtype}) to {printable(str(out))}{note}")
    return 0


def check_out(out: Path) -> bool:
    """Whether --out holds an earlier export (to be replaced); RunError for anything else that is
    not a new or empty directory, nothing in it touched."""
    shown = printable(str(out))
    if not os.path.lexists(out):
        return False
    if os.path.islink(out) or not out.is_dir():
        raise RunError(f"--out {shown}: exists and is not a directory")
    try:
        names = set(os.listdir(out))
    except OSError as e:
        raise RunError(f"--out {shown}: unreadable ({os_reason(e)})") from None
    if names and MARKER not in names:
        raise RunError(f"--out {shown}: not empty and not an earlier export (no {MARKER}); choose a new "
                       "directory (nothing in it was touched)")
    others = sorted(names - FILES)
    if others:
        raise RunError(f"--out {shown}: an earlier export, but it also holds {', '.join(map(repr, others[:3]))}, "
                       "which an export does not write; move them or choose another directory")
    return bool(names)


def hf_config(m, dtype: str) -> dict:
    """config.json for GPT2LMHeadModel of our [model]: exact GELU is "gelu", tanh is GPT-2's "gelu_new"."""
    eot = EOT if m.vocab_size > EOT else None
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": m.vocab_size,
            "n_positions": m.block_size, "n_embd": m.n_embd, "n_layer": m.n_layer, "n_head": m.n_head, "n_inner": None,
            "activation_function": "gelu_new" if m.gelu == "tanh" else "gelu", "resid_pdrop": m.dropout,
            "embd_pdrop": m.dropout, "attn_pdrop": m.dropout, "layer_norm_epsilon": 1e-5, "initializer_range": m.init_std,
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
            "tie_word_embeddings": True, "use_cache": True, "bos_token_id": eot, "eos_token_id": eot, "dtype": dtype}


def tokenizer_files(block_size: int) -> dict[str, bytes]:
    from gigagpt.tokenizer import hf_tokenizer_files

    special = {"bos_token": EOT_TEXT, "eos_token": EOT_TEXT, "unk_token": EOT_TEXT}
    config = {"tokenizer_class": "GPT2Tokenizer", "model_max_length": block_size, "add_prefix_space": False,
              "clean_up_tokenization_spaces": False, **special}  # decode gives back the text, as tiktoken does
    return {**hf_tokenizer_files(), "tokenizer_config.json": as_json(config), "special_tokens_map.json": as_json(special)}


def as_json(obj) -> bytes:
    return (json.dumps(obj, indent=2) + "\n").encode()


def at_step(run_dir: Path, step: int) -> dict:
    """The run's figures up to `step`, read through the store: tokens, last train and val loss,
    best val loss; what cannot be read is left out."""
    from gigagpt.store.metrics import Reader

    found = {}
    try:
        for rec in Reader(run_dir / "metrics.jsonl"):
            if rec.get("step", 0) > step:
                continue
            if rec["kind"] == "train":
                found.update(train_step=rec["step"], loss=rec.get("loss"), tokens=rec.get("tokens"))
            elif rec["kind"] == "eval" and rec.get("val_loss") is not None:
                found.update(val_step=rec["step"], val_loss=rec["val_loss"])
                found["best_val"] = min(found.get("best_val", math.inf), rec["val_loss"])
    except (OSError, ValueError):
        pass
    return found


def model_card(run_dir: Path, out: Path, ckpt: Path, step: int, params: int, dtype: str, tokenizer: bool) -> bytes:
    """README.md: what was trained, how far, with which config, and how to load it."""
    from gigagpt.store.curves import flat_config
    from gigagpt.store.meta import read_meta

    try:
        meta = read_meta(run_dir)
        name, max_steps = meta.display_name, meta.max_steps
    except RunError:
        name, max_steps = printable(run_dir.name), None
    got = at_step(run_dir, step)

    def num(key, fmt):
        return "–" if got.get(key) is None else format(got[key], fmt)

    rows = [("run", f"`{printable(run_dir.name)}`, checkpoint `{ckpt.name}`"), ("parameters", f"{params:,}"),
            ("steps", f"{step:,}" + (f" of {max_steps:,}" if max_steps else "")), ("tokens seen", num("tokens", ",")),
            (f"train loss (step {got.get('train_step', '–')})", num("loss", ".4f")),
            (f"val loss (step {got.get('val_step', '–')})", num("val_loss", ".4f")), ("best val loss", num("best_val", ".4f")),
            ("weights", f"{dtype}, model.safetensors")]
    flat = flat_config(run_dir)
    sections = ("model", "train", "data", "cerebras") if flat.get("train.backend") == "cerebras" else ("model", "train", "data")
    config = "\n\n".join(f"[{s}]\n" + "\n".join(f"{k.partition('.')[2]} = {printable(json.dumps(v))}" for k, v in flat.items()
                                                 if k.startswith(s + ".")) for s in sections)
    start = flat.get("model.init_from")
    rows.insert(1, ("started from", f"`{printable(str(start))}`" if start else "random init"))
    where = json.dumps(printable(out.name))  # the directory may move: its name, as a relative path
    use = (f'from transformers import pipeline\ngenerate = pipeline("text-generation", model={where})\n'
           'print(generate("ROMEO:", max_new_tokens=50)[0]["generated_text"])' if tokenizer else
           f"from transformers import GPT2LMHeadModel\nmodel = GPT2LMHeadModel.from_pretrained({where})  # no tokenizer: "
           "its vocabulary is smaller than GPT-2's")
    text = ("---\nlibrary_name: transformers\npipeline_tag: text-generation\ntags: [gigagpt, gpt2]\n---\n\n"
            f"# {name}\n\nA GPT-2 (GPT2LMHeadModel) language model trained with gigagpt.\n\n| | |\n|---|---|\n"
            + "".join(f"| {k} | {v} |\n" for k, v in rows)
            + f"\n## Config (the run's config.toml)\n\n```toml\n{config}\n```\n\n## Use\n\n```python\n{use}\n```\n")
    return text.encode("utf-8")


def export(run_dir: Path, out: Path, step: int | None = None, dtype: str = "float32") -> tuple[Path, str]:
    """Write the export; (checkpoint, a note for the user's line). RunError for anything refused."""
    import torch

    from gigagpt.hf import to_hf
    from gigagpt.plan import param_count
    from gigagpt.sample import load_model
    from gigagpt.store.layout import checkpoint_step
    from gigagpt.tokenizer import VOCAB_SIZE

    try:
        from safetensors.torch import save_file
    except ImportError:
        raise RunError("export-hf writes safetensors: pip install 'gigagpt[hf]'") from None
    ckpt, model = load_model(run_dir, step)
    m, step = model.cfg, checkpoint_step(ckpt)
    with_tokenizer = m.vocab_size >= VOCAB_SIZE  # a smaller vocabulary is not GPT-2's tokenizer's
    files = tokenizer_files(m.block_size) if with_tokenizer else {}
    files.update({"config.json": as_json(hf_config(m, dtype)), "generation_config.json":
                  as_json({"_from_model_config": True, "bos_token_id": hf_config(m, dtype)["bos_token_id"],
                           "eos_token_id": hf_config(m, dtype)["eos_token_id"]}),
                  "README.md": model_card(run_dir, out, ckpt, step, param_count(dataclasses.replace(m, pad_vocab_to=0)),
                                          dtype, with_tokenizer),  # the exported parameters: no padded rows
                  MARKER: as_json({"run": str(run_dir.resolve()), "checkpoint": ckpt.name, "step": step, "dtype": dtype})})
    tensors = to_hf(model.state_dict(), m, getattr(torch, dtype))
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        os.chmod(tmp / "model.safetensors", 0o644)  # as readable as the files beside it (safetensors makes it 0600)
        replace_dir(tmp, out)
    except OSError as e:
        raise RunError(f"--out {printable(str(out))}: cannot write the export ({os_reason(e)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    note = "" if with_tokenizer else (f"; no tokenizer files: the model has {m.vocab_size} token ids, "
                                      f"GPT-2's tokenizer {VOCAB_SIZE}")
    return ckpt, note


def replace_dir(tmp: Path, out: Path) -> None:
    """tmp renamed to out; an earlier export (or an empty directory) there is moved aside first
    and removed after, so out is never a mix of two exports."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if check_out(out):  # checked again: it may have changed while the weights were read
        os.replace(out, old)
    elif out.is_dir():
        out.rmdir()
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
