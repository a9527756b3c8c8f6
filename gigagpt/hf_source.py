"""Where `[model] init_from` weights come from and what shape they have: a Hugging Face GPT-2 name
(the local Hugging Face cache, else a download) or a model directory, and its config.json read into
our [model] keys. No torch, no transformers: the weights themselves are gigagpt/hf.py's."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from gigagpt.config import RULES, ConfigError, read_toml, read_user_file, show, validate
from gigagpt.store.files import user_path

HUB = {"gpt2": "openai-community/gpt2", "gpt2-medium": "openai-community/gpt2-medium",
       "gpt2-large": "openai-community/gpt2-large", "gpt2-xl": "openai-community/gpt2-xl"}
CONFIG_MAX_BYTES = 1 << 20  # a config.json is a few KB
# Our [model] key <- config.json's key. bias and gelu are not shapes but must match the weights too.
SHAPE = {"n_layer": "n_layer", "n_head": "n_head", "n_embd": "n_embd", "block_size": "n_positions",
         "vocab_size": "vocab_size"}
GELU = {"gelu": "exact", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu_fast": "tanh"}


def source_dir(init_from: str, where: str) -> Path:
    """The local directory holding init_from's config.json and weights; ConfigError (one line)
    when there is none."""
    if init_from in HUB:
        return hub_dir(init_from, where)
    path = user_path(init_from)
    if not path.is_dir():
        raise ConfigError(f"{where}: model.init_from = {show(init_from)}: no such directory; use "
                          f"{', '.join(HUB)} or a Hugging Face model directory (config.json + model.safetensors)")
    return path


def hub_dir(name: str, where: str) -> Path:
    """A GPT-2 snapshot from the Hugging Face cache (either repo id it has lived under), else
    downloaded; without internet and cache, one line saying what to fetch and where to put it."""
    try:
        from huggingface_hub import constants, snapshot_download
    except ImportError:
        raise ConfigError(f"{where}: model.init_from = {show(name)} needs huggingface_hub: "
                          "pip install 'gigagpt[hf]'") from None
    files = ["config.json", "model.safetensors"]
    for repo in (HUB[name], name):
        try:
            found = Path(snapshot_download(repo, allow_patterns=files, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached (the hub's error types change between versions)
            continue
        if all((found / f).is_file() for f in files):
            return found
    try:
        return Path(snapshot_download(HUB[name], allow_patterns=files))
    except Exception as e:  # noqa: BLE001 - offline, a proxy, a full disk: the line says what to do
        why = " ".join(str(e).split()).split(". ")[0][:160] or type(e).__name__  # its first sentence
        raise ConfigError(f"{where}: model.init_from = {show(name)}: not in the Hugging Face cache "
                          f"({constants.HF_HUB_CACHE}) and the download failed ({type(e).__name__}: {why}); on a "
                          f"machine with internet run `hf download {HUB[name]} config.json model.safetensors` "
                          "and copy its cache here (HF_HOME), or set model.init_from to a directory holding "
                          "those two files") from None


def read_config(directory: Path) -> tuple[Path, dict]:
    """(path, object) of a model directory's config.json; ConfigError naming it when it is not one."""
    path = directory / "config.json"
    data = read_user_file(path, CONFIG_MAX_BYTES, "model config (a Hugging Face model directory has config.json)")
    try:
        raw = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON
        raise ConfigError(f"{path}: not valid JSON ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a JSON object, not {type(raw).__name__}")
    return path, raw


def hf_shape(directory: Path) -> tuple[Path, dict, dict]:
    """(config.json, our [model] keys it fixes: shape, bias, gelu; its object). Only what our GPT reproduces
    exactly is accepted: GPT-2, LayerNorm eps 1e-5, a 4x MLP, a tied head, scaled attention."""
    path, raw = read_config(directory)

    def bad(key, allowed):
        raise ConfigError(f"{path}: {key} = {show(raw.get(key))}: {allowed}")

    if raw.get("model_type") != "gpt2":
        bad("model_type", 'must be "gpt2" (GPT2LMHeadModel weights)')
    shape = {}
    for ours, theirs in SHAPE.items():
        value = raw.get(theirs, raw.get("n_ctx") if theirs == "n_positions" else None)
        test, allowed = RULES[f"model.{ours}"]
        if not isinstance(value, int) or isinstance(value, bool) or not test(value):
            bad(theirs, f"must be an integer: {allowed}")
        shape[ours] = value
    if shape["n_embd"] % shape["n_head"]:
        bad("n_embd", f"must be divisible by n_head = {shape['n_head']}")
    if raw.get("activation_function", "gelu_new") not in GELU:
        bad("activation_function", "must be one of " + ", ".join(map(repr, GELU)) + " (our MLP's GELU)")
    checks = {"layer_norm_epsilon": (1e-5, "must be 1e-05 (our LayerNorms')"), "tie_word_embeddings": (True, "must be true"),
              "scale_attn_weights": (True, "must be true"), "scale_attn_by_inverse_layer_idx": (False, "must be false"),
              "n_inner": (None, f"must be null (4 * n_embd = {4 * shape['n_embd']})"),
              "add_cross_attention": (False, "must be false")}
    for key, (want, allowed) in checks.items():
        if key in raw and raw[key] != want and not (key == "n_inner" and raw[key] == 4 * shape["n_embd"]):
            bad(key, allowed)
    return path, {**shape, "bias": True, "gelu": GELU[raw.get("activation_function", "gelu_new")]}, raw


def given_keys(config_path: Path, overrides: list[str]) -> set[str]:
    """The [model] keys a config file or its --set overrides name (already validated by load_config)."""
    table = read_toml(Path(config_path), "config file").get("model", {})
    return set(table) | {t.partition("=")[0].strip().partition(".")[2] for t in overrides
                         if t.partition("=")[0].strip().startswith("model.")}


def apply_init_from(cfg, config_path: Path, overrides: list[str], check_data: bool = True):
    """cfg with its [model] shape from init_from's config.json; a key the config names with another
    value is one line (block_size may be smaller: the position table is cropped, as nanoGPT does).
    The weights are checked here too, before any run directory exists."""
    m, where = cfg.model, str(config_path)
    path, shape, raw = hf_shape(source_dir(m.init_from, where))
    given = given_keys(config_path, overrides)
    for key, value in shape.items():
        mine = getattr(m, key)
        fits = mine == value or (key == "block_size" and mine <= value)
        if key in given and not fits:
            theirs = {"bias": "biases (GPT-2 always has them)", "gelu": "activation_function = "
                      + show(raw.get("activation_function", "gelu_new"))}.get(key, f"{SHAPE.get(key)} = {show(value)}")
            raise ConfigError(f"{where}: model.{key} = {show(mine)}, but model.init_from = {show(m.init_from)} has "
                              f"{theirs} ({path}); leave model.{key} out (it comes from init_from) or set it to "
                              f"{show(value)}" + (" or less" if key == "block_size" else ""))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(m, **{k: v for k, v in shape.items() if k not in given}))
    validate(cfg, where, check_data=check_data)
    from gigagpt.hf import read_weights  # torch: the tensors' names and shapes, read lazily

    read_weights(path.parent, cfg.model, shapes_only=True)
    return cfg
