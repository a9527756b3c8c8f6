"""Typed configs read from TOML presets, with `--set section.key=value` overrides.

No torch here: the dashboard imports this module to validate its form.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """Bad config: the message names the file, key, value and what is allowed."""


@dataclass
class ModelConfig:
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    block_size: int = 1024
    vocab_size: int = 50257
    bias: bool = True  # biases in linears and LayerNorms; the tied LM head never has one
    dropout: float = 0.0
    init_std: float = 0.02
    attention: str = "sdpa"  # "sdpa" (fused kernel) or "math" (masked softmax, for compilers)
    gelu: str = "exact"  # "exact" (erf, as gigaGPT and nanoGPT) or "tanh" (OpenAI GPT-2's: its weights need it)
    init_from: str = ""  # "" random init; Hugging Face weights: gpt2, gpt2-medium, gpt2-large, gpt2-xl or a directory
    pad_vocab_to: int = 0  # embedding / LM head rows rounded up to a multiple (64: 50257 -> 50304, GPU kernels); 0 off


@dataclass
class TrainConfig:
    max_steps: int = 1000
    batch_size: int = 8  # sequences per micro-step; an optimizer step sees batch_size*grad_accum
    grad_accum: int = 1
    lr: float = 6e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping (the norm is still logged)
    dtype: str = "bfloat16"  # autocast dtype: "bfloat16" or "float32"
    compile: bool = False
    parallel: str = "auto"  # with several processes: "ddp", "fsdp", or "auto" (the planner picks)
    activation_checkpointing: bool = False  # recompute each block in backward: less memory, ~1/3 more compute
    seed: int = 1337
    log_interval: int = 10
    eval_interval: int = 100
    eval_steps: int = 20
    checkpoint_interval: int = 500
    keep_checkpoints: int = 2
    backend: str = "torch"  # "torch", or "cerebras": the Cerebras PyTorch SDK (see [cerebras])


@dataclass
class DataConfig:
    dataset: str = "shakespeare"  # a prepared dataset's name under data/, or a path


@dataclass
class CerebrasConfig:
    """train.backend = "cerebras": where the SDK runs. Keys not in a config come from the settings
    file's [cerebras] table (gigagpt.toml: your cluster, set once)."""
    target: str = "CSX"  # "CSX" (a Cerebras cluster) or "CPU" (the SDK on this machine, no cluster)
    num_systems: int = 1  # CS systems (data parallel; the same code on 1 or many)
    mgmt_address: str = ""  # the cluster's management server "host:port"; "" = use cluster_config
    mgmt_namespace: str = ""
    credentials_path: str = ""  # the cluster's TLS certificate (with mgmt_address)
    cluster_config: str = "/opt/cerebras/config_v2"  # the cluster's own config file (usernode install)
    mount_dirs: list[str] = field(default_factory=list)  # mounted on the cluster's workers (+ dataset, repo)
    python_paths: list[str] = field(default_factory=list)  # PYTHONPATH on the workers (+ this repo)
    validate_only: bool = False  # trace and lower for CSX, no cluster (what `gigagpt check-csx` does)
    compile_only: bool = False  # compile on the cluster, do not train


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    cerebras: CerebrasConfig = field(default_factory=CerebrasConfig)


SECTIONS = {"model": ModelConfig, "train": TrainConfig, "data": DataConfig, "cerebras": CerebrasConfig}
CHOICES = {("model", "attention"): ("sdpa", "math"), ("train", "dtype"): ("bfloat16", "float32"),
           ("train", "parallel"): ("auto", "ddp", "fsdp"), ("train", "backend"): ("torch", "cerebras"),
           ("cerebras", "target"): ("CSX", "CPU"), ("model", "gelu"): ("exact", "tanh")}
TYPE_NAMES = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string", list: "a list of strings"}


def show(value) -> str:
    """A value as an error line shows it: its repr (TOML's true/false), cut to 80 characters."""
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# Each key's allowed values beyond its type: (test, what the error says). Bounds are sane upper
# limits: far above any real model or run, and small enough that the planner's arithmetic holds.
BIG = 10**12
RULES = {
    "model.n_layer": (lambda v: 1 <= v <= 1024, "must be in [1, 1024]"),
    "model.n_head": (lambda v: 1 <= v <= 65536, "must be in [1, 65536]"),
    "model.n_embd": (lambda v: 1 <= v <= 65536, "must be in [1, 65536]"),
    "model.block_size": (lambda v: 1 <= v <= 1 << 20, "must be in [1, 1048576]"),
    "model.vocab_size": (lambda v: 1 <= v <= 1 << 20, "must be in [1, 1048576]"),
    "model.pad_vocab_to": (lambda v: 0 <= v <= 65536, "must be in [0, 65536] (0 or 1: no padding)"),
    "model.dropout": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "model.init_std": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "train.lr": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "train.min_lr_ratio": (lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    "train.warmup_steps": (lambda v: 0 <= v <= BIG, f"must be in [0, {BIG:,}]"),
    "train.weight_decay": (lambda v: v >= 0, "must be >= 0"),
    "train.grad_clip": (lambda v: v >= 0, "must be >= 0 (0 disables clipping)"),
    "train.beta1": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "train.beta2": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "train.eps": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "train.seed": (lambda v: 0 <= v < 2**63, "must be in [0, 2**63)"),
    "cerebras.num_systems": (lambda v: 1 <= v <= 1024, "must be in [1, 1024]"),
    "cerebras.mgmt_address": (lambda v: not v or re.fullmatch(r"[^\s:]+:[0-9]{1,5}", v), 'must be "host:port"'),
    **{f"train.{k}": (lambda v: 1 <= v <= BIG, f"must be in [1, {BIG:,}]")
       for k in ("max_steps", "batch_size", "grad_accum", "log_interval", "eval_interval", "eval_steps",
                 "checkpoint_interval", "keep_checkpoints")},
    **{f"{s}.{k}": (lambda v, c=c: v in c, "must be one of " + ", ".join(map(repr, c))) for (s, k), c in CHOICES.items()},
}
PATH_KEYS = ("data.dataset", "cerebras.credentials_path", "cerebras.cluster_config", "cerebras.mount_dirs",
             "cerebras.python_paths", "model.init_from")
OPTIONAL_PATHS = ("cerebras.credentials_path", "cerebras.cluster_config", "model.init_from")  # "" means none
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def check_value(where: str, dotted: str, value, t):
    """value as the key's type t, or ConfigError naming where, the key, the value and what is allowed.
    TOML integers are accepted where floats are expected."""
    ok = (
        (t is bool and isinstance(value, bool))
        or (t is int and isinstance(value, int) and not isinstance(value, bool))
        or (t is float and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
        or (t is str and isinstance(value, str))
        or (t is list and isinstance(value, list) and all(isinstance(v, str) for v in value))
    )
    if not ok:
        raise ConfigError(f"{where}: {dotted} = {show(value)}: must be {TYPE_NAMES[t]}")
    value = float(value) if t is float else value
    for text in value if t is list else [value] if t is str else []:
        problem = "must be one line of printable text" if CONTROL.search(text) else None
        if dotted in PATH_KEYS and not text and dotted not in OPTIONAL_PATHS:
            problem = "must not be empty"
        elif dotted in PATH_KEYS and (len(os.fsencode(text)) > 4096 or any(len(os.fsencode(p)) > 255 for p in text.split("/"))):
            problem = problem or "is too long for a path (4096 bytes, 255 a name)"  # on any system we run on
        if problem:
            raise ConfigError(f"{where}: {dotted} = {show(value)}: {problem}")
    test, allowed = RULES.get(dotted, (None, None))
    if test and not test(value):
        raise ConfigError(f"{where}: {dotted} = {show(value)}: {allowed}")
    return value


def _field_types(cls) -> dict:
    hints = {"int": int, "float": float, "bool": bool, "str": str, "list[str]": list}
    return {f.name: hints[f.type] if isinstance(f.type, str) else f.type for f in fields(cls)}


def _home_of(key: str) -> str:
    """ '; it belongs in [train]' for a key of another section, else ''."""
    homes = [s for s, cls in SECTIONS.items() if key in _field_types(cls)]
    return f"; {key} belongs in [{homes[0]}]" if homes else ""


def from_dict(raw: dict, source: str = "<config>") -> Config:
    cfg = Config()
    for section, values in raw.items():
        sections = ", ".join(f"[{s}]" for s in SECTIONS)
        if section not in SECTIONS and isinstance(values, dict):
            raise ConfigError(f"{source}: unknown section [{show(section).strip(chr(39))}]; allowed: {sections}")
        if section not in SECTIONS:
            raise ConfigError(f"{source}: {show(section).strip(chr(39))} = {show(values)} at the top level: keys go "
                              f"in a section ({sections}){_home_of(section)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: {section} = {show(values)}: must be a [{section}] table")
        types = _field_types(SECTIONS[section])
        for key, value in values.items():
            if key not in types:
                raise ConfigError(f"{source}: unknown key {section}.{show(key).strip(chr(39))}; allowed in "
                                  f"[{section}]: {', '.join(types)}{_home_of(key)}")
            setattr(getattr(cfg, section), key, check_value(source, f"{section}.{key}", value, types[key]))
    return cfg


def parse_override(text: str, source: str = "--set") -> tuple[str, str, object]:
    """'train.lr=3e-4' -> ('train', 'lr', 0.0003). The value is read as TOML (numbers, booleans,
    strings, arrays); a string key also takes bare text (data.dataset=shakespeare), and a list key
    comma-separated text (cerebras.mount_dirs=/data,/scratch)."""
    dotted, _, raw = (s.strip() for s in text.partition("="))
    section, _, key = dotted.partition(".")
    if "=" not in text or not section or not key:
        raise ConfigError(f"{source}: {show(text)}: expected section.key=value, e.g. train.lr=3e-4")
    if section not in SECTIONS:
        raise ConfigError(f"{source}: {show(text)}: unknown section [{section}]; allowed: {', '.join(SECTIONS)}")
    types = _field_types(SECTIONS[section])
    if key not in types:
        raise ConfigError(f"{source}: {show(text)}: unknown key {dotted}; allowed in [{section}]: "
                          f"{', '.join(types)}{_home_of(key)}")
    t = types[key]
    try:
        value = tomllib.loads(f"v = {raw}")["v"] if raw and not CONTROL.search(raw) else raw
    except (ValueError, RecursionError):  # not TOML: bare text
        value = raw
    if t is str:  # bare text, or text that TOML reads as another type (data.dataset=2024), is the string
        value = value if isinstance(value, str) else raw
    elif t is list and value is raw:
        value = [v.strip() for v in raw.split(",") if v.strip()]
    elif value is raw and raw:
        raise ConfigError(f"{source}: {dotted} = {show(raw)}: must be {TYPE_NAMES[t]}")
    return section, key, check_value(source, dotted, value, t)


def apply_overrides(cfg: Config, overrides: list[str], source: str = "--set") -> Config:
    cfg = dataclasses.replace(cfg, **{s: dataclasses.replace(getattr(cfg, s)) for s in SECTIONS})  # the caller's is left alone
    for text in overrides or []:
        section, key, value = parse_override(text, source)
        setattr(getattr(cfg, section), key, value)
    return cfg


TOML_MAX_BYTES = 1 << 20  # a config or settings file is a few KB


def read_user_file(path: Path, limit: int, what: str) -> bytes:
    """A small file a user handed us, or ConfigError naming it (a FIFO would block a plain read)."""
    from gigagpt.store.files import NotRegular, TooLarge, read_regular

    try:
        return read_regular(path, limit)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (NotRegular, IsADirectoryError):
        raise ConfigError(f"{path}: {what} is not a regular file") from None
    except TooLarge:
        raise ConfigError(f"{path}: {what} larger than {limit >> 20} MiB") from None
    except OSError as e:
        raise ConfigError(f"{path}: {what} unreadable ({e.strerror or e})") from None


def read_toml(path: Path, what: str) -> dict:
    """A TOML file as a dict, or ConfigError naming it: unreadable, not UTF-8, not TOML, too deep."""
    data = read_user_file(path, TOML_MAX_BYTES, what)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    except ValueError as e:  # TOMLDecodeError, UnicodeDecodeError
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def load_config(path, overrides: list[str] | None = None, check_data: bool = True) -> Config:
    """Read, override and validate a TOML config. Raises ConfigError on any problem."""
    path = Path(path)
    raw = read_toml(path, "config file")
    if all(isinstance(v, dict) and not v for v in raw.values()):
        raise ConfigError(f"{path}: the config sets nothing (an empty config would train the default 124M model); "
                          f"start from a preset: {', '.join(preset_names())}")
    cfg = from_dict(raw, str(path))
    given = raw.get("cerebras", {})
    from gigagpt.settings import settings  # settings.py checks its [cerebras] table with from_dict

    for key, value in settings().get("cerebras", {}).items():  # the settings file's cluster, where the config is silent
        if key not in given:
            setattr(cfg.cerebras, key, value)
    cfg = apply_overrides(cfg, overrides or [])
    validate(cfg, str(path), check_data=check_data)
    return cfg


REPO = Path(__file__).resolve().parent.parent
PRESETS_DIR = REPO / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


MAX_SEQUENCES = 1 << 24  # 16M sequences in one step (gigaGPT's 175b: 1472)
MAX_PARAMS = 10**13  # 57x GPT-3: past this the planner's figures (and any machine) mean nothing


def validate(cfg: Config, source: str = "<config>", check_data: bool = True) -> None:
    """Every key's type and range (a Config can be built in code, or from a checkpoint's dict),
    then the rules between keys, then (check_data) the dataset."""
    from gigagpt.plan import padded_vocab, param_count  # pure arithmetic; plan imports this module

    for section, cls in SECTIONS.items():
        for key, t in _field_types(cls).items():
            check_value(source, f"{section}.{key}", getattr(getattr(cfg, section), key), t)
    m, t, c = cfg.model, cfg.train, cfg.cerebras

    def bad(key, value, allowed):
        raise ConfigError(f"{source}: {key} = {show(value)}: {allowed}")

    if m.n_embd % m.n_head:
        bad("model.n_embd", m.n_embd, f"must be divisible by model.n_head = {m.n_head}")
    if padded_vocab(m) > 1 << 20:
        bad("model.pad_vocab_to", m.pad_vocab_to, f"rounds vocab_size {m.vocab_size} up to {padded_vocab(m)}; at most 1048576")
    if param_count(m) > MAX_PARAMS:
        bad("model.n_layer", m.n_layer, f"with n_embd = {m.n_embd}, vocab_size = {m.vocab_size} and block_size = "
            f"{m.block_size} makes {param_count(m):.2e} parameters; at most {MAX_PARAMS:.0e}")
    for key in ("grad_accum", "eval_steps"):  # the sequences one step draws: start offsets and a batch each
        if t.batch_size * getattr(t, key) > MAX_SEQUENCES:
            bad(f"train.{key}", getattr(t, key), f"times train.batch_size = {t.batch_size} must be at most "
                f"{MAX_SEQUENCES:,} sequences")
    if t.lr * t.weight_decay >= 1:
        bad("train.weight_decay", t.weight_decay, f"times train.lr = {t.lr} must be < 1 (each step scales the "
            "weights by 1 - lr x weight_decay)")
    if t.warmup_steps > t.max_steps:
        bad("train.warmup_steps", t.warmup_steps, f"must be in [0, train.max_steps = {t.max_steps}]")
    if t.backend == "cerebras" and t.batch_size * t.grad_accum % c.num_systems:
        bad("train.batch_size", t.batch_size, f"times train.grad_accum = {t.grad_accum} must be divisible by "
            f"cerebras.num_systems = {c.num_systems} (each system streams an equal share)")
    if m.init_from and t.backend == "cerebras":
        bad("model.init_from", m.init_from, 'is for train.backend = "torch" (the Cerebras trainer starts from random init)')
    if check_data:
        from gigagpt.dataset import dataset_info  # reads files: only when asked to

        info = dataset_info(cfg.data.dataset, source)
        for split in ("train", "val"):
            if info["tokens"][split] <= m.block_size:
                bad("model.block_size", m.block_size, f"must be smaller than the {split} split of dataset {info['path']} "
                    f"({info['tokens'][split]} tokens)")
        if info["vocab_size"] > m.vocab_size:
            bad("model.vocab_size", m.vocab_size, f"must be >= the dataset's vocabulary ({info['vocab_size']}, {info['path']})")


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_toml(cfg: Config) -> str:
    """The fully resolved config as TOML (config.toml), by tomli-w: a kept library's quoting and escaping."""
    try:
        import tomli_w  # here, not at the top: the dashboard and the CLI never write a config
    except ImportError:
        raise ConfigError(f"tomli-w is not installed in {sys.executable} (pip install tomli-w; for the "
                          "Cerebras backend: gigagpt env cerebras)") from None
    return tomli_w.dumps(to_dict(cfg))
