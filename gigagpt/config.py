"""Typed configs read from TOML presets, with `--set section.key=value` overrides.

No torch here: the dashboard imports this module to validate its form.
"""
from __future__ import annotations

import dataclasses
import json
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
           ("cerebras", "target"): ("CSX", "CPU")}


def data_root() -> Path:
    return Path(os.environ.get("GIGAGPT_DATA", "data"))


def runs_root() -> Path:
    return Path(os.environ.get("GIGAGPT_RUNS", "runs"))


def cache_dir() -> Path:
    if os.environ.get("GIGAGPT_CACHE"):
        return Path(os.environ["GIGAGPT_CACHE"])
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "gigagpt"
    base = os.environ.get("LOCALAPPDATA") if sys.platform == "win32" else os.environ.get("XDG_CACHE_HOME")
    return Path(base or Path.home() / ".cache") / "gigagpt"


def _type_name(t) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            list: "a list of strings"}[t]


def _check_type(where: str, key: str, value, t):
    """Return value as type t, or raise. TOML ints are accepted where floats are expected."""
    ok = (
        (t is bool and isinstance(value, bool))
        or (t is int and isinstance(value, int) and not isinstance(value, bool))
        or (t is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (t is str and isinstance(value, str))
        or (t is list and isinstance(value, list) and all(isinstance(v, str) for v in value))
    )
    if not ok:
        raise ConfigError(f"{where}: {key} = {value!r}: must be {_type_name(t)}")
    return float(value) if t is float else value


def _field_types(cls) -> dict:
    hints = {"int": int, "float": float, "bool": bool, "str": str, "list[str]": list}
    return {f.name: hints[f.type] if isinstance(f.type, str) else f.type for f in fields(cls)}


def from_dict(raw: dict, source: str = "<config>") -> Config:
    cfg = Config()
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{source}: unknown section [{section}]; allowed: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: {section} = {values!r}: must be a [{section}] table")
        types = _field_types(SECTIONS[section])
        for key, value in values.items():
            if key not in types:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}; allowed in [{section}]: {', '.join(types)}"
                )
            setattr(getattr(cfg, section), key, _check_type(source, f"{section}.{key}", value, types[key]))
    return cfg


def parse_override(text: str, source: str = "--set") -> tuple[str, str, object]:
    """'train.lr=3e-4' -> ('train', 'lr', 0.0003), converted to the key's type."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"{source} {text!r}: expected section.key=value, e.g. train.lr=3e-4")
    dotted, raw = (s.strip() for s in text.split("=", 1))
    section, key = dotted.split(".", 1)
    if section not in SECTIONS:
        raise ConfigError(f"{source} {text!r}: unknown section [{section}]; allowed: {', '.join(SECTIONS)}")
    types = _field_types(SECTIONS[section])
    if key not in types:
        raise ConfigError(f"{source} {text!r}: unknown key {dotted}; allowed in [{section}]: {', '.join(types)}")
    t = types[key]
    try:
        if t is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            value = raw.lower() in ("true", "1")
        elif t is int:
            value = int(raw.replace("_", ""))
        elif t is float:
            value = float(raw)
        elif t is list:  # --set cerebras.mount_dirs=/data,/scratch
            value = [v.strip() for v in raw.split(",") if v.strip()]
        else:
            value = raw
    except ValueError:
        raise ConfigError(f"{source} {dotted} = {raw!r}: must be {_type_name(t)}") from None
    return section, key, value


def apply_overrides(cfg: Config, overrides: list[str], source: str = "--set") -> Config:
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model), train=dataclasses.replace(cfg.train),
        data=dataclasses.replace(cfg.data), cerebras=dataclasses.replace(cfg.cerebras),
    )
    for text in overrides or []:
        section, key, value = parse_override(text, source)
        setattr(getattr(cfg, section), key, value)
    return cfg


TOML_MAX_BYTES = 1 << 20  # a config or settings file is a few KB


def read_toml(path: Path, what: str) -> dict:
    """A TOML file as a dict, or ConfigError naming it: missing, not a regular file (a FIFO would
    block a plain read), over 1 MiB, not UTF-8, not TOML, or nested past what the parser can take."""
    from gigagpt.store.files import NotRegular, TooLarge, read_regular

    try:
        return tomllib.loads(read_regular(path, TOML_MAX_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (NotRegular, IsADirectoryError):
        raise ConfigError(f"{path}: {what} is not a regular file") from None
    except TooLarge:
        raise ConfigError(f"{path}: {what} larger than {TOML_MAX_BYTES >> 20} MiB") from None
    except OSError as e:
        raise ConfigError(f"{path}: {what} unreadable ({e.strerror or e})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: nested too deeply") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None


def load_config(path, overrides: list[str] | None = None, check_data: bool = True) -> Config:
    """Read, override and validate a TOML config. Raises ConfigError on any problem."""
    path = Path(path)
    raw = read_toml(path, "config file")
    raw = {**raw, "cerebras": {**settings().get("cerebras", {}), **raw.get("cerebras", {})}}
    cfg = apply_overrides(from_dict(raw, str(path)), overrides or [])
    validate(cfg, str(path), check_data=check_data)
    return cfg


# ---------------------------------------------------------------------------- settings (this machine)

REPO = Path(__file__).resolve().parent.parent


def settings_path() -> Path | None:
    """The settings file: $GIGAGPT_SETTINGS, else ./gigagpt.toml, else the user config dir's."""
    if os.environ.get("GIGAGPT_SETTINGS"):
        return Path(os.environ["GIGAGPT_SETTINGS"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    for p in (Path("gigagpt.toml"), Path(base) / "gigagpt" / "gigagpt.toml"):
        if p.is_file():
            return p
    return None


def settings() -> dict:
    """This machine's settings (TOML), {} without a file:
    [python] cerebras = "/path/to/python"  (the interpreter of the Cerebras SDK's environment)
    [cerebras] mgmt_address = "...", ...   (defaults for every config's [cerebras] section)
    [runs] roots = ["/path/a", ...]        (more runs roots to browse: extra_runs_roots())"""
    path = settings_path()
    if path is None:
        return {}
    try:
        raw = read_toml(path, "settings file")
    except ConfigError as e:
        raise ConfigError(f"{e} (the settings file)") from None
    for key, value in raw.items():
        if key not in ("python", "cerebras", "runs") or not isinstance(value, dict):
            raise ConfigError(f"{path}: {key}: unknown; the settings file has [python], [cerebras] and [runs] tables")
    from_dict({"cerebras": raw.get("cerebras", {})}, str(path))  # same keys and types as a config's
    return raw


def extra_runs_roots() -> list[Path]:
    """Settings [runs] roots: more runs roots, browsed (listed, opened, resumed...) besides the
    runs root (--runs-root, else $GIGAGPT_RUNS or ./runs), where new runs are launched. `~` is
    expanded; a relative path is relative to the settings file. Whether they exist is the
    caller's to say (gigagpt.store.layout.root_problem)."""
    path = settings_path()
    raw = settings().get("runs", {})
    unknown = set(raw) - {"roots"}
    if unknown:
        raise ConfigError(f"{path}: [runs] {', '.join(sorted(unknown))}: unknown; [runs] has roots")
    roots = raw.get("roots", [])
    if not isinstance(roots, list) or not all(isinstance(r, str) and r for r in roots):
        raise ConfigError(f"{path}: [runs] roots = {roots!r}: must be a list of paths (strings)")
    try:
        return [path.parent / Path(r).expanduser() for r in roots]  # an absolute path stays itself
    except RuntimeError as e:  # ~user that does not exist
        raise ConfigError(f"{path}: [runs] roots = {roots!r}: {e}") from None


CEREBRAS_ENV = REPO / ".venv-cerebras"  # where scripts/cerebras-env.sh builds the SDK's environment


def cerebras_python() -> Path:
    """The Python of the Cerebras SDK's environment: settings [python] cerebras, else the default."""
    named = settings().get("python", {}).get("cerebras")
    python = Path(named).expanduser() if named else CEREBRAS_ENV / "bin" / "python"
    if not os.access(python, os.X_OK):
        where = f"{settings_path()}: [python] cerebras = {named!r}" if named else f"{python}"
        raise ConfigError(f"no Python for the Cerebras backend at {where}; build its environment with "
                          f"`gigagpt env cerebras` (scripts/cerebras-env.sh, ~6 GB), or name one in "
                          f"gigagpt.toml: [python] cerebras = \"/path/to/bin/python\"")
    return python


def check_cluster(cfg: Config) -> None:
    """Raise ConfigError naming the missing setting when a Cerebras run needs a cluster it lacks.

    Runs before anything slow (the SDK's own error comes only after its start-up and a compile)."""
    c = cfg.cerebras
    if cfg.train.backend != "cerebras" or c.target != "CSX" or c.validate_only:
        return
    for key in ("mount_dirs", "python_paths"):
        for d in getattr(c, key):
            if not Path(d).exists():
                raise ConfigError(f"cerebras.{key}: {d!r} does not exist on this machine")
    if c.credentials_path and not Path(c.credentials_path).is_file():
        raise ConfigError(f"cerebras.credentials_path = {c.credentials_path!r}: no such file")
    if not c.mgmt_address and not Path(c.cluster_config).is_file():
        raise ConfigError(
            f"no Cerebras cluster configured: cerebras.mgmt_address is not set and the cluster config file "
            f"cerebras.cluster_config = {c.cluster_config!r} does not exist. Set [cerebras] mgmt_address = "
            f"\"host:port\" (and credentials_path) in the config or in the settings file gigagpt.toml, "
            f"or check the model without a cluster: `gigagpt check-csx CONFIG`")


def validate(cfg: Config, source: str = "<config>", check_data: bool = True) -> None:
    m, t = cfg.model, cfg.train

    def bad(key, value, allowed):
        raise ConfigError(f"{source}: {key} = {value!r}: {allowed}")

    for key in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
        if getattr(m, key) <= 0:
            bad(f"model.{key}", getattr(m, key), "must be > 0")
    if m.n_embd % m.n_head:
        bad("model.n_embd", m.n_embd, f"must be divisible by model.n_head = {m.n_head}")
    if not 0.0 <= m.dropout < 1.0:
        bad("model.dropout", m.dropout, "must be in [0, 1)")
    if m.init_std <= 0:
        bad("model.init_std", m.init_std, "must be > 0")
    for key in ("max_steps", "batch_size", "grad_accum", "log_interval", "eval_interval",
                "eval_steps", "checkpoint_interval", "keep_checkpoints"):
        if getattr(t, key) <= 0:
            bad(f"train.{key}", getattr(t, key), "must be > 0")
    if t.lr <= 0:
        bad("train.lr", t.lr, "must be > 0")
    if not 0.0 <= t.min_lr_ratio <= 1.0:
        bad("train.min_lr_ratio", t.min_lr_ratio, "must be in [0, 1]")
    if t.warmup_steps < 0 or t.warmup_steps > t.max_steps:
        bad("train.warmup_steps", t.warmup_steps, f"must be in [0, train.max_steps = {t.max_steps}]")
    for key in ("weight_decay", "grad_clip"):
        if getattr(t, key) < 0:
            bad(f"train.{key}", getattr(t, key), "must be >= 0")
    for key in ("beta1", "beta2"):
        if not 0.0 <= getattr(t, key) < 1.0:
            bad(f"train.{key}", getattr(t, key), "must be in [0, 1)")
    if t.eps <= 0:
        bad("train.eps", t.eps, "must be > 0")
    c = cfg.cerebras
    if c.num_systems <= 0:
        bad("cerebras.num_systems", c.num_systems, "must be > 0")
    if c.mgmt_address and not re.fullmatch(r"[^\s:]+:[0-9]+", c.mgmt_address):
        bad("cerebras.mgmt_address", c.mgmt_address, 'must be "host:port"')
    if t.backend == "cerebras" and t.batch_size * t.grad_accum % c.num_systems:
        bad("train.batch_size", t.batch_size, f"times train.grad_accum = {t.grad_accum} must be divisible by "
            f"cerebras.num_systems = {c.num_systems} (each system streams an equal share)")
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            bad(f"{section}.{key}", value, "must be one of " + ", ".join(map(repr, allowed)))
    if check_data:
        info = dataset_info(cfg.data.dataset, source)
        for split in ("train", "val"):
            if info["tokens"][split] <= m.block_size:
                bad("model.block_size", m.block_size,
                    f"must be smaller than the {split} split of dataset {info['path']} "
                    f"({info['tokens'][split]} tokens)")
        if info["vocab_size"] > m.vocab_size:
            bad("model.vocab_size", m.vocab_size,
                f"must be >= the dataset's vocabulary ({info['vocab_size']}, {info['path']})")


def resolve_dataset(name: str) -> Path:
    """A dataset is a directory path, or a name under the data root."""
    p = Path(name).expanduser()
    if p.is_dir() or os.sep in name or name.startswith("."):
        return p
    return data_root() / name


def dataset_info(name: str, source: str = "<config>") -> dict:
    """Token counts of a prepared dataset, from the .bin sizes (the truth) and meta.json."""
    path = resolve_dataset(name)
    missing = [f for f in ("train.bin", "val.bin") if not (path / f).is_file()]
    if missing:
        raise ConfigError(
            f"{source}: data.dataset = {name!r}: no prepared dataset at {path} (missing "
            f"{', '.join(missing)}); prepare one with `gigagpt data prepare shakespeare`"
        )
    meta = {}
    if (path / "meta.json").is_file():
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path / 'meta.json'}: not valid JSON: {e}") from None
    return {
        "path": path,
        "tokens": {s: (path / f"{s}.bin").stat().st_size // 2 for s in ("train", "val")},
        "vocab_size": int(meta.get("vocab_size", 0)),
        "eot": meta.get("eot", 50256),
        "meta": meta,
    }


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_toml(cfg: Config) -> str:
    """The fully resolved config as TOML (config.toml), written by tomli-w: a kept library's
    quoting and escaping instead of our own."""
    try:
        import tomli_w  # here, not at the top: the dashboard and the CLI never write a config
    except ImportError:
        raise ConfigError(f"tomli-w is not installed in {sys.executable} (pip install tomli-w; for the "
                          "Cerebras backend: gigagpt env cerebras)") from None
    return tomli_w.dumps(to_dict(cfg))
