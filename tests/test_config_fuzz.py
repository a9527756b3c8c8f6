"""Issue 13: a seeded fuzzer over bad configs and `--set` values.

Every refused input gets one line on stderr (`gigagpt: error: ...`) naming the file (or `--set`), the
key, the value and what is allowed; exit 2; no run started, no run directory, nothing else created or
changed. The fuzz runs `gigagpt.cli.main(["train", ...])` in-process with tripwires on everything that
would start a run (the trainer, torchrun, the Cerebras launcher, exec), one small prepared dataset
shared by every case so that the data check passes and the fuzzed key is what fails. Each case knows
which key is bad; a test collects every case's problems and fails once with a summary by kind (the
seed and the case's description reproduce it). A few cases also go through the real CLI in a
subprocess, and the fuzzed `--set` values through the dashboard's launch form (app.launch).
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import shutil
import signal
import string
from collections import defaultdict
from pathlib import Path

import pytest
import tomllib
from conftest import gigagpt as run_cli

from gigagpt import cli as gcli
from gigagpt import config as gconfig
from gigagpt.config import ConfigError

SEEDS = [1, 2, 3]
N_CONFIG = 40  # cases per config category and seed: 10 categories x 3 seeds x 40 = 1,200 files
N_SET = 20  # cases per --set category and seed: 6 x 3 x 20 = 360 values
CASE_TIMEOUT_S = 10  # one in-process case; a hang (a FIFO read, a runaway loop) is a failure, not a stuck suite


# ---------------------------------------------------------------------------- the keys (the spec)

# float keys: (low, high, low open, high open); high None: no upper bound (finite only)
FLOAT_RANGES = {
    "train.lr": (0, 1, True, False),
    "train.eps": (0, 1, True, False),
    "model.init_std": (0, 1, True, False),
    "model.dropout": (0, 1, False, True),
    "train.min_lr_ratio": (0, 1, False, False),
    "train.beta1": (0, 1, False, True),
    "train.beta2": (0, 1, False, True),
    "train.weight_decay": (0, None, False, False),
    "train.grad_clip": (0, None, False, False),
}
BIG = 10**12
# int keys: (low, high) inclusive; n_head's high is n_embd and warmup_steps' is max_steps (from BASE)
INT_RANGES = {
    "model.n_layer": (1, 1024),
    "model.n_head": (1, None),
    "model.n_embd": (1, 65536),
    "model.block_size": (1, 1 << 20),
    "model.vocab_size": (1, 1 << 20),
    "model.pad_vocab_to": (0, 65536),
    **{f"train.{k}": (1, BIG) for k in ("max_steps", "batch_size", "grad_accum", "log_interval", "eval_interval",
                                       "eval_steps", "checkpoint_interval", "keep_checkpoints")},
    "train.warmup_steps": (0, None),
    "train.seed": (0, 2**63 - 1),
    "cerebras.num_systems": (1, 1024),
}
BOOL_KEYS = ["model.bias", "train.compile", "train.activation_checkpointing", "cerebras.validate_only",
             "cerebras.compile_only"]
CHOICES = {"model.attention": ("sdpa", "math"), "train.dtype": ("bfloat16", "float32"),
           "train.parallel": ("auto", "ddp", "fsdp"), "train.backend": ("torch", "cerebras"),
           "cerebras.target": ("CSX", "CPU"), "model.gelu": ("exact", "tanh")}
STR_KEYS = [*CHOICES, "data.dataset", "cerebras.mgmt_address", "cerebras.mgmt_namespace",
            "cerebras.credentials_path", "cerebras.cluster_config", "model.init_from"]
LIST_KEYS = ["cerebras.mount_dirs", "cerebras.python_paths"]
TYPE_OF = {**{k: float for k in FLOAT_RANGES}, **{k: int for k in INT_RANGES}, **{k: bool for k in BOOL_KEYS},
           **{k: str for k in STR_KEYS}, **{k: list for k in LIST_KEYS}}
SECTIONS = ("model", "train", "data", "cerebras")
TYPE_WORDS = {int: ("integer", "int", "whole number"), float: ("number", "float"), bool: ("true", "bool"),
              str: ("string", "text"), list: ("list", "array")}
ALLOWED_WORDS = ("must", "allowed", "expected", "one of", "at most", "at least", "between", "only", "belongs",
                 "should", "use ", "need", "go in", "goes in")

# The base every case starts from: small (should a case slip through, the subprocess trains two steps of
# a toy model, not a 124M one), and valid on the shared dataset.
BASE_MODEL = {"n_layer": "1", "n_head": "1", "n_embd": "8", "block_size": "16"}
BASE_TRAIN = {"max_steps": "2", "warmup_steps": "0", "batch_size": "1", "eval_steps": "1", "dtype": '"float32"'}
BASE_N_EMBD, BASE_MAX_STEPS = 8, 2

DATES = ["1979-05-27T07:32:00Z", "1979-05-27T00:32:00.999999-07:00", "1979-05-27T07:32:00", "1979-05-27",
         "07:32:00"]
WRONG_TYPE = {  # TOML texts of the wrong type for a key of each type
    int: ['"12"', "'3'", '""', "true", "false", "1.0", "2.5", "-0.0", "[1]", "[]", "{a = 1}", "{}", *DATES],
    float: ['"0.1"', "'3e-4'", '""', "true", "false", "[0.1]", "[]", "{x = 1}", "{}", *DATES],
    bool: ["1", "0", '"true"', "'false'", '"yes"', "1.0", "[true]", "{}", *DATES],
    str: ["1", "1.5", "true", '["a"]', "[]", '{a = "b"}', "{}", "nan", *DATES],
    list: ['"/a"', "1", "true", "[1, 2]", '["a", 1]', '[["a"]]', "[true]", '{a = "b"}', *DATES],
}
NONFINITE = ["nan", "+nan", "-nan", "inf", "+inf", "-inf", "1e309", "-1e400"]
WORDS = ["fp8", "flash", "tpu", "jax", "gpu", "float16", "bf16", "none", "xla", "fast", "default", "zero",
         "megatron", "triton", "cuda", "fp64", "tf32", "wse", "cs2", "mixed"]


def toml_str(s: str) -> str:
    """s as a TOML basic string (control characters escaped)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_float(x: float) -> str:
    return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(x), repr(x))


def parsed(text: str):
    """The TOML value of text, or a marker when it is not TOML."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except Exception:  # noqa: BLE001 - not TOML, or too deep / too big for the parser
        return _NOT_TOML


_NOT_TOML = object()


def renderings(text: str | None, value=_NOT_TOML) -> tuple[str, ...]:
    """Ways an error line may show a value: the TOML text, the Python value's repr and str."""
    out = [] if text is None else [text]
    v = parsed(text) if value is _NOT_TOML and text is not None else value
    if v is not _NOT_TOML:
        try:
            out += [repr(v), str(v)]
        except ValueError:  # an int past the str() digit limit
            pass
        if isinstance(v, bool):
            out += ["true" if v else "false"]
        if isinstance(v, str):
            from gigagpt.store.meta import printable

            out += [printable(v), printable(repr(v))]
    return tuple(dict.fromkeys(x for x in out if x))


# ---------------------------------------------------------------------------- a case and how it is judged

@dataclasses.dataclass
class Case:
    category: str
    what: str  # the input, for a reader (and to reproduce it)
    text: str | bytes | None = None  # the config file's content; None: the base config
    config: str = "c.toml"  # the config argument
    sets: list[str] = dataclasses.field(default_factory=list)
    special: str | None = None  # "dir", "fifo": the config path is made so instead of written
    source: tuple[str, ...] = ()  # one must appear: the config path, or "--set"
    keys: tuple[str, ...] = ()  # one must appear
    values: tuple[str, ...] = ()  # one must appear
    needles: tuple[str, ...] = ()  # all must appear
    types: tuple[str, ...] = ()  # one must appear: the expected type
    allowed: bool = True  # the line says what is allowed
    lenient: bool = False  # an int past 64 bits (a TOML error): the key, the value or a line number will do
    direct: bool = True  # load_config(config, sets) alone must refuse it (not only cmd_train's later checks)


def appears(candidates, line: str) -> bool:
    for c in candidates:
        c = c if len(c) <= 60 else c[:20]  # a long value may be cut in the message
        if c and c in line:
            return True
    return False


def config_text(dataset: Path, fields: dict[str, str] | None = None, extra: str = "", without=()) -> str:
    """The base config with fields {"section.key": toml_text} set (replacing the base's), less the
    sections named in `without`, then `extra`."""
    sections = {"model": dict(BASE_MODEL), "train": dict(BASE_TRAIN), "data": {"dataset": toml_str(str(dataset))},
                "cerebras": {}}
    for dotted, text in (fields or {}).items():
        section, key = dotted.split(".", 1)
        sections[section][key] = text
    for section in without:
        sections.pop(section)
    out = []
    for section, kv in sections.items():
        if kv:
            out.append(f"[{section}]")
            out += [f"{k} = {v}" for k, v in kv.items()]
    return "\n".join(out) + "\n" + extra


class RunStarted(AssertionError):
    pass


class Hang(BaseException):
    pass


def snapshot(d: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(d):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(d))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def clear(d: Path) -> None:
    for p in d.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


@dataclasses.dataclass
class Fuzz:
    work: Path  # the current directory
    root: Path  # --runs-root (never created)
    dataset: Path
    capsys: object

    def run(self, case: Case) -> tuple[list[str], str]:
        """(problems, the stderr) of one case through gigagpt.cli.main."""
        clear(self.work)
        if self.root.exists():
            shutil.rmtree(self.root)
        path = self.work / case.config if len(case.config) < 255 else None
        if case.special == "dir":
            path.mkdir()
        elif case.special == "fifo":
            os.mkfifo(path)
        elif path is not None and case.text is not None:
            if isinstance(case.text, bytes):
                path.write_bytes(case.text)
            else:
                path.write_text(case.text, encoding="utf-8")
        elif path is not None and case.special != "missing":
            path.write_text(config_text(self.dataset))
        before = self.tmp_state()
        argv = ["train", case.config, "--runs-root", str(self.root), *[x for s in case.sets for x in ("--set", s)]]
        self.capsys.readouterr()
        problems, rc = [], None
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
        try:
            rc = gcli.main(argv)
        except RunStarted:
            problems.append("run started")
        except SystemExit as e:
            problems.append(f"SystemExit({e.code}) escaped")
        except Hang:
            problems.append(f"hung > {CASE_TIMEOUT_S} s")
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - anything else is a traceback for the user
            problems.append(f"traceback: {type(e).__name__}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        out, err = self.capsys.readouterr()
        if rc is not None and rc != 2:
            problems.append(f"exit {rc}")
        if rc is not None or err:
            n = err.count("\n")
            if not (n == 1 and err.endswith("\n")):
                problems.append(f"stderr has {n} lines" if err else "stderr empty")
            if not err.startswith("gigagpt: error:"):
                problems.append("no 'gigagpt: error:' prefix")
        line = err.splitlines()[0] if err else ""
        if rc == 2 and line.startswith("gigagpt: error:"):
            problems += judge(case, line)
        if self.root.exists():
            problems.append("run directory created" + (f" ({sorted(os.listdir(self.root))[:1]})" if
                                                       self.root.is_dir() else ""))
        after = self.tmp_state()
        if after != before:
            added = sorted(set(after) - set(before))
            problems.append(f"files changed: +{added[:3]}" if added else "files changed")
        clear(self.work)
        if self.root.exists():
            shutil.rmtree(self.root)
        if case.direct:
            problems += self.direct(case)
        return problems, err

    def tmp_state(self) -> dict:
        """The test's tmp dir (current directory, settings dir, ...), less the runs root (judged apart)."""
        return {k: v for k, v in snapshot(self.work.parent).items() if Path(k).parts[0] != self.root.name}

    def direct(self, case: Case) -> list[str]:
        """load_config alone refuses it with a ConfigError (not another exception)."""
        if case.special:
            return []
        path = self.work / case.config
        if isinstance(case.text, bytes):
            path.write_bytes(case.text)
        else:
            path.write_text(config_text(self.dataset) if case.text is None else case.text, encoding="utf-8")
        try:
            gconfig.load_config(path, case.sets)
        except ConfigError as e:
            return [] if "\n" not in str(e) else ["load_config: a message of several lines"]
        except Exception as e:  # noqa: BLE001
            return [f"load_config: traceback {type(e).__name__}"]
        finally:
            clear(self.work)
        return ["load_config accepted it"]


def _alarm(signum, frame):
    raise Hang()


def judge(case: Case, line: str) -> list[str]:
    out = []
    if case.source and not appears(case.source, line):
        out.append("source not named" if case.source != ("--set",) else "'--set' not named")
    if case.lenient:
        if not (appears(case.keys, line) or appears(case.values, line) or "line" in line):
            out.append("neither key, value nor line named")
        return out
    if case.keys and not appears(case.keys, line):
        out.append("key not named")
    if case.values and not appears(case.values, line):
        out.append("value not named")
    for n in case.needles:
        if n not in line:
            out.append(f"{n!r} not named")
    if case.types and not any(w in line for w in case.types):
        out.append("expected type not said")
    if case.allowed and not any(w in line for w in ALLOWED_WORDS):
        out.append("what is allowed not said")
    return out


@pytest.fixture
def fz(tmp_path, monkeypatch, capsys, dataset):
    """A fresh current directory, an absent runs root, no settings file, tripwires on every start."""
    import gigagpt.train as gtrain

    work, xdg = tmp_path / "cwd", tmp_path / "xdg"
    work.mkdir()
    xdg.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.delenv("GIGAGPT_SETTINGS", raising=False)

    def trip(*args, **kw):
        raise RunStarted("run started")

    monkeypatch.setattr(gtrain, "train", trip)
    monkeypatch.setattr(gcli, "launch_torchrun", trip)
    monkeypatch.setattr(gcli, "launch_cerebras", trip)
    monkeypatch.setattr(os, "execv", trip)
    monkeypatch.setattr(os, "execve", trip)
    data_before = snapshot(dataset)
    yield Fuzz(work, tmp_path / "runs", dataset, capsys)
    assert snapshot(dataset) == data_before, "the shared dataset changed"


def report(results: list[tuple[Case, list[str], str]]) -> None:
    """Fail once, with every kind of problem, its count and a few examples (category, input, stderr)."""
    kinds = defaultdict(list)
    for case, problems, err in results:
        for p in problems:
            kinds[p].append((case, err))
    if not kinds:
        return
    lines = [f"{sum(1 for _, p, _ in results if p)} of {len(results)} cases failed"]
    for kind, items in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"- {kind}: {len(items)}")
        for case, err in items[:3]:
            lines.append(f"    [{case.category}] {ascii(case.what[:200])}")
            lines.append(f"      stderr: {err.strip()[:300]!r}")
    pytest.fail("\n".join(lines), pytrace=False)


# ---------------------------------------------------------------------------- config generators

def _float_bad(rng: random.Random, dotted: str) -> list[str]:
    lo, hi, lo_open, hi_open = FLOAT_RANGES[dotted]
    bad = [toml_float(lo - rng.uniform(1e-6, 10)), toml_float(-rng.uniform(1, 1e300)), "-1"]
    if lo_open:
        bad += ["0", "0.0", "-0.0"]
    if hi is not None:
        bad += [toml_float(hi + rng.uniform(1e-6, 10)), toml_float(rng.uniform(2, 1e300)), "2"]
        if hi_open:
            bad += ["1", "1.0"]
    return bad


def _int_bad(rng: random.Random, dotted: str) -> list[int]:
    lo, hi = INT_RANGES[dotted]
    if dotted == "model.n_head":
        hi = BASE_N_EMBD
    elif dotted == "train.warmup_steps":
        hi = BASE_MAX_STEPS
    bad = [lo - 1, lo - rng.randint(1, 10**6), hi + 1, hi + rng.randint(1, 10**9)]
    if dotted == "train.warmup_steps":
        bad.append(BIG + 1)
    return bad


def _key_case(category: str, dotted: str, text: str, fields=None, **kw) -> Case:
    fields = {**(fields or {}), dotted: text}
    return Case(category, f"config {dotted} = {text[:120]}", text=None, keys=kw.pop("keys", (dotted,)),
                values=kw.pop("values", renderings(text)), source=("c.toml",), **kw), fields


def gen_nonfinite(rng, ctx):
    dotted = rng.choice(list(FLOAT_RANGES))
    return _key_case("nonfinite", dotted, rng.choice(NONFINITE))


def gen_float_range(rng, ctx):
    dotted = rng.choice(list(FLOAT_RANGES))
    return _key_case("float_range", dotted, rng.choice(_float_bad(rng, dotted)))


def gen_int_range(rng, ctx):
    if rng.random() < 0.1:  # within each key's bounds, but over 10**13 parameters
        d = rng.choice([32768, 65536])
        layers = rng.randint(math.ceil(1.2e13 / (12 * d * d)), 1024)
        fields = {"model.n_embd": str(d), "model.n_head": str(rng.choice([1, 64, 128])), "model.n_layer": str(layers)}
        case, _ = _key_case("int_range", "model.n_layer", str(layers), fields,
                            keys=("model.n_layer", "model.n_embd", "model.vocab_size", "parameters"), values=())
        case.what = f"config n_layer = {layers}, n_embd = {d}: over 10**13 parameters"
        return case, fields
    dotted = rng.choice(list(INT_RANGES))
    value = rng.choice(_int_bad(rng, dotted))
    if dotted == "model.n_head" and value > BASE_N_EMBD:  # n_head past n_embd: either key may be named
        return _key_case("int_range", dotted, str(value), keys=("model.n_head", "model.n_embd"))
    return _key_case("int_range", dotted, str(value))


def gen_huge_int(rng, ctx):
    dotted = rng.choice(list(INT_RANGES))
    if rng.random() < 0.15:
        text = rng.choice(["1e23", "1e100", "9.3e18", "1.8446744073709552e19"])  # a float: the wrong type
        return _key_case("huge_int", dotted, text, types=TYPE_WORDS[int])
    value = rng.choice([10**23, 2**63, 2**64, -(2**63), -(2**63) - 1, 10**100, -(10**30), 2**63 + rng.randint(1, 10**9)])
    case, fields = _key_case("huge_int", dotted, str(value))
    case.lenient = not -(2**63) <= value < 2**63  # past TOML's 64 bits: may be refused as a TOML error
    return case, fields


def gen_wrong_type(rng, ctx):
    dotted = rng.choice(list(TYPE_OF))
    t = TYPE_OF[dotted]
    return _key_case("wrong_type", dotted, rng.choice(WRONG_TYPE[t]), types=TYPE_WORDS[t])


def _bad_choice(rng, allowed) -> tuple[str, str]:
    """(a bad value, how it was made)."""
    low = {a.lower() for a in allowed}
    kind = rng.choice(["word", "random", "empty", "control", "long"])
    if kind == "word":
        v = rng.choice([w for w in WORDS if w not in low])
    elif kind == "random":
        v = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 12)))
        v = v if v not in low else v + "x"
    elif kind == "empty":
        v = ""
    elif kind == "control":
        a = rng.choice(allowed)
        i = rng.randint(1, len(a) - 1)
        v = a[:i] + rng.choice(["\x00", "\x01", "\x07", "\x08", "\x1b", "\x7f", "\t", "\n", "\r"]) + a[i:]
    else:
        v = rng.choice(string.ascii_letters) * 10_000
    return v, kind


def gen_choices(rng, ctx):
    dotted = rng.choice(list(CHOICES))
    v, _ = _bad_choice(rng, CHOICES[dotted])
    text = toml_str(v)
    return _key_case("choices", dotted, text, values=renderings(text, v), needles=())


def gen_paths(rng, ctx):
    ds = ctx["dataset"]
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(8))
    v = rng.choice([
        "", f"{ds}\x00", f"data\x00{word}", "x" * 5000, f"/tmp/{'x' * 4990}", "/" + "y" * 300, "y" * 300 + "/data",
        f"/nonexistent-{word}/{word}", f"no-such-{word}", str(ds / "train.bin"), str(ds / "meta.json"),
        str(ds.parent), f"{ds}/{word}",
    ])
    text = toml_str(v)
    return _key_case("paths", "data.dataset", text, values=renderings(text, v), allowed=False)


def gen_cerebras_paths(rng, ctx):
    ds = ctx["dataset"]
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(8))
    bad = [f"/nonexistent-{word}/cert.pem", f"/tmp/{word}\x00.pem", "c" * 5000, "/" + "c" * 300 + "/x.pem"]
    key = rng.choice(["cerebras.credentials_path", "cerebras.cluster_config", "cerebras.mount_dirs",
                      "cerebras.python_paths"])
    fields = {"train.backend": '"cerebras"', "cerebras.target": '"CSX"'}
    if key == "cerebras.credentials_path":
        v = rng.choice([*bad, str(ds)])  # a directory: not a certificate file
        fields["cerebras.mgmt_address"] = '"host:9000"'
    elif key == "cerebras.cluster_config":
        v = rng.choice([*bad, str(ds), ""])
    else:
        v = rng.choice(bad)
        fields["cerebras.mgmt_address"] = '"host:9000"'
    text = toml_str(v) if not key.endswith(("dirs", "paths")) else f"[{toml_str(v)}]"
    case, fields = _key_case("cerebras_paths", key, text, fields, values=renderings(toml_str(v), v), allowed=False)
    case.direct = False  # the cluster's files are checked when a Cerebras run starts (check_cluster)
    return case, fields


def gen_structure(rng, ctx):
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 10)))
    kind = rng.choice(["section", "key", "wrong_section", "top_scalar", "top_key", "array_of_tables",
                       "subtable", "dotted"])
    base = config_text(ctx["dataset"])
    if kind == "section":
        name = rng.choice([word, "Model", "models", "training", "optimizer", "dataset"])
        text, keys = base + f"[{name}]\nx = 1\n", (name,)
    elif kind == "key":
        section = rng.choice(SECTIONS)
        name = rng.choice([word, "n_layers", "learning_rate", "steps", "lr_min"])
        text = base.replace(f"[{section}]\n", f"[{section}]\n{name} = 1\n") if f"[{section}]\n" in base \
            else base + f"[{section}]\n{name} = 1\n"
        keys = (name,)
    elif kind == "wrong_section":
        dotted = rng.choice([k for k in TYPE_OF if k.split(".")[1] not in ("dataset",)])
        home, key = dotted.split(".")
        other = rng.choice([s for s in SECTIONS if s != home and s != "cerebras"])
        value = {int: "2", float: "0.5", bool: "true", str: '"x"', list: '["/a"]'}[TYPE_OF[dotted]]
        text, keys = base.replace(f"[{other}]\n", f"[{other}]\n{key} = {value}\n"), (key,)
    elif kind == "top_scalar":
        section = rng.choice(SECTIONS)
        value = rng.choice(["1", '"x"', "true", "[1]", "3e-4", "[]", "1979-05-27"])
        text, keys = f"{section} = {value}\n" + config_text(ctx["dataset"], without=[section]), (section,)
    elif kind == "top_key":
        key = rng.choice(["lr", "n_layer", "max_steps", "dataset", "dtype", word])
        text, keys = f"{key} = {rng.choice(['3e-4', '2', '1', 'true'])}\n" + base, (key,)
    elif kind == "array_of_tables":
        section = rng.choice(["model", "train", "cerebras"])
        text, keys = base.replace(f"[{section}]\n", f"[[{section}]]\n") if f"[{section}]\n" in base \
            else base + f"[[{section}]]\n", (section,)
    elif kind == "subtable":
        section = rng.choice(SECTIONS)
        text, keys = base + f"[{section}.{word}]\nx = 1\n", (word,)
    else:  # dotted keys into a section that is not a table
        text, keys = base.replace("[model]\n", f"[model]\n{word}.a = 1\n"), (word,)
    return Case("structure", f"{kind}: {text[:160]!r}", text=text, keys=keys, values=(), source=("c.toml",)), None


def gen_file(rng, ctx):
    """The file itself: empty, not UTF-8, not TOML, too big, too deep, not a file, no such file, bad path."""
    base = config_text(ctx["dataset"])
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(8))
    kind = rng.choice(["empty", "whitespace", "comments", "bom", "utf8", "nul", "toml", "big", "deep", "dir",
                       "fifo", "missing", "long_path", "long_component"])
    name, text, special, needles, what = "c.toml", None, None, (), kind
    if kind == "empty":
        text, needles = "", ("tiny",)
    elif kind == "whitespace":
        text = "".join(rng.choice([" ", "\t", "\n", "\r\n"]) for _ in range(rng.randint(1, 200)))  # no lone CR: not TOML
        needles = ("tiny",)
    elif kind == "comments":
        text = "".join(f"# {word} {i}\n" if rng.random() < 0.8 else "\n" for i in range(rng.randint(1, 30)))
        needles = ("tiny",)
    elif kind == "bom":
        text = "\ufeff" + rng.choice(["", "[model]\nn_layer = 0\n", base])
        text = text.encode("utf-8")
        what = f"bom: {text[:60]!r}"
    elif kind == "utf8":
        raw = base.encode()
        i = rng.randint(0, len(raw))
        text = raw[:i] + rng.choice([b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80"]) + raw[i:]
        what = f"utf8: {text[max(0, i - 10):i + 10]!r} at {i}"
    elif kind == "nul":
        raw = base.encode()
        i = rng.randint(0, len(raw))
        text, what = raw[:i] + b"\x00" + raw[i:], f"nul at byte {i}"
    elif kind == "toml":
        text = rng.choice([
            "[model\n", "[model]\nn_layer = \n", "= 1\n", "[model]\nn_layer = 1 2\n", "[model]\nn_layer = 1\nn_layer = 2\n",
            "[model]\n[model]\n", "[data]\ndataset = 'unterminated\n", 'x = """', "[train]\nlr = 3e-4.5\n",
            "[train]\nlr = .5\n", "[train]\nlr = 1_\n", "[train]\nmax_steps = 01\n", "[ ]\n", "[train]\nlr = 1e\n",
            "[model]\nn_layer = 0x\n", "[model]\nbias = True\n", "[train]\ndtype = bfloat16\n", "[train]]\n",
            "".join(rng.choice(string.punctuation + string.ascii_letters + " \n") for _ in range(60)).lstrip("#") + "[",
        ])
        what = f"toml: {text[:80]!r}"
    elif kind == "big":
        text = rng.choice([base + "# " + "x" * (2 << 20) + "\n", base + "".join(f"# {i}\n" for i in range(300_000)),
                           base + " " * (2 << 20)])
        what = f"big: {len(text)} bytes"
    elif kind == "deep":
        n = rng.randint(2_000, 10_000)
        key = rng.choice(["n_layer", "x", "dropout"])
        inner = rng.choice(["[" * n + "1" + "]" * n, "{a = " * n + "1" + "}" * n])
        text = base.replace("[model]\n", f"[model]\n{key} = {inner}\n")
        what = f"deep: [model] {key} nested {n} levels ({inner[:1]})"
    elif kind == "dir":
        name, special = rng.choice(["cfgdir.toml", "cfgdir"]), "dir"
        what = f"the config path is a directory: {name}"
    elif kind == "fifo":
        name, special = rng.choice(["fifo.toml", "fifo"]), "fifo"
        what = f"the config path is a FIFO: {name}"
    elif kind == "missing":
        name, special = rng.choice([f"missing-{word}.toml", f"missing-{word}", f"sub-{word}/c.toml"]), "missing"
        what = f"no such file: {name}"
    elif kind == "long_path":
        name, special = rng.choice(["p" * 4995 + ".toml", "p" * 5000, "/" + "/".join(["q" * 200] * 25)]), "missing"
        what = f"a {len(name)}-character config path"
    else:
        name, special = rng.choice(["d" * 300 + "/c.toml", "d" * 300 + ".toml", "c" * 300]), "missing"
        what = f"a config path with a 300-character component: {name[:20]}..."
    return Case("file", what, text=text, config=name, special=special, source=(name,), needles=needles,
                allowed=False, direct=False), None


CONFIG_GENERATORS = {
    "nonfinite": gen_nonfinite, "float_range": gen_float_range, "int_range": gen_int_range, "huge_int": gen_huge_int,
    "wrong_type": gen_wrong_type, "choices": gen_choices, "paths": gen_paths, "cerebras_paths": gen_cerebras_paths,
    "structure": gen_structure, "file": gen_file,
}


def make_config_case(gen, rng, ctx) -> Case:
    case, fields = gen(rng, ctx)
    if fields is not None:
        case.text = config_text(ctx["dataset"], fields)
    return case


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("category", list(CONFIG_GENERATORS))
def test_fuzz_config_files(fz, category, seed):
    rng = random.Random(seed * 1000 + list(CONFIG_GENERATORS).index(category))
    ctx = {"dataset": fz.dataset}
    results = []
    for _ in range(N_CONFIG):
        case = make_config_case(CONFIG_GENERATORS[category], rng, ctx)
        problems, err = fz.run(case)
        problems += check_from_dict(case)
        results.append((case, problems, err))
    report(results)


def check_from_dict(case: Case) -> list[str]:
    """from_dict on the parsed file raises ConfigError or returns a Config: never another exception."""
    if not isinstance(case.text, str):
        return []
    try:
        raw = tomllib.loads(case.text)
    except Exception:  # noqa: BLE001 - not TOML: read_toml's to refuse
        return []
    try:
        gconfig.from_dict(raw, "c.toml")
    except ConfigError:
        pass
    except Exception as e:  # noqa: BLE001
        return [f"from_dict: traceback {type(e).__name__}"]
    return []


# ---------------------------------------------------------------------------- --set generators

def _set_case(category, dotted, value_text, **kw) -> Case:
    s = f"{dotted}={value_text}"
    return Case(category, f"--set {s[:160]!r}", sets=[s], source=("--set",), keys=kw.pop("keys", (dotted,)),
                values=kw.pop("values", renderings(value_text)), **kw)


def gen_set_nonfinite(rng, ctx):
    return _set_case("set_nonfinite", rng.choice(list(FLOAT_RANGES)), rng.choice(NONFINITE))


def gen_set_range(rng, ctx):
    if rng.random() < 0.5:
        dotted = rng.choice(list(FLOAT_RANGES))
        return _set_case("set_range", dotted, rng.choice(_float_bad(rng, dotted)))
    dotted = rng.choice(list(INT_RANGES))
    value = rng.choice(_int_bad(rng, dotted) + [10**23, 2**63, 2**64, -(2**63)])
    if dotted == "train.warmup_steps" and BASE_MAX_STEPS < value <= BIG or dotted == "model.n_head" and value > BASE_N_EMBD:
        # a rule between keys (warmup past max_steps, n_head past n_embd): the file or --set may be named
        return _set_case("set_range", dotted, str(value), source=("--set", "c.toml"),
                         keys=(dotted, "model.n_embd") if dotted == "model.n_head" else (dotted,))
    return _set_case("set_range", dotted, str(value))


SET_WRONG_TYPE = {
    int: ["1.0", "2.5", "1e23", "true", "'12'", '"12"', "[1]", "{a=1}", "twelve", "1979-05-27", "0x", "1_", "--1"],
    float: ["'3e-4'", '"0.1"', "true", "[0.1]", "{x=1}", "fast", "1979-05-27", "3e-4.5", ".5", "1e"],
    bool: ["yes", "no", "1", "0", "'true'", '"false"', "on", "off", "[true]", "1.0", "y"],
    list: ["[1]", '["a", 1]', "[[]]", "[true]", "{a=1}"],
}


def gen_set_type(rng, ctx):
    dotted = rng.choice([k for k in TYPE_OF if TYPE_OF[k] is not str])  # a string key takes bare text
    t = TYPE_OF[dotted]
    return _set_case("set_type", dotted, rng.choice(SET_WRONG_TYPE[t]), types=TYPE_WORDS[t])


def gen_set_syntax(rng, ctx):
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 9)))
    section = rng.choice(SECTIONS)
    s, keys = rng.choice([
        ("nosection=1", ("nosection",)), ("train=1", ("train",)), ("train.nokey=1", ("nokey",)),
        (f"{section}.{word}=1", (word,)), (f"{word}.lr=1", (word,)), ("model.n_layer", ("model.n_layer",)),
        ("data.dataset", ("data.dataset",)), ("=1", ()), (".lr=1", ("lr",)), ("train.lr=", ("train.lr",)),
        ("model.=1", ("model.",)), ("train..lr=1", ("lr",)), ("train.lr.x=1", ("lr.x",)),
        ("model.n_layer==3", ("model.n_layer",)), ("train.lr 3e-4", ("train.lr",)), ("lr=3e-4", ("lr",)),
        ("TRAIN.LR=1", ("TRAIN",)), ("train.LR=1", ("LR",)), ("model.n_layer=", ("model.n_layer",)),
    ])
    return Case("set_syntax", f"--set {s!r}", sets=[s], source=("--set",), keys=keys, values=(), allowed=bool(keys))


def gen_set_choice(rng, ctx):
    dotted = rng.choice(list(CHOICES))
    v, kind = _bad_choice(rng, CHOICES[dotted])
    if kind in ("empty",) or "\n" in v or "\r" in v or "\t" in v or "\x00" in v:
        v = rng.choice([w for w in WORDS if w not in {a.lower() for a in CHOICES[dotted]}])  # argv-safe, no strip
    return _set_case("set_choice", dotted, v, values=renderings(v, v))


def gen_set_weird(rng, ctx):
    """Control characters and 10,000-character values, for keys of every type."""
    c = rng.choice(["\x01", "\x07", "\x08", "\x1b", "\x7f", "\x1b[31m"])
    kind = rng.choice(["control", "long", "deep"])
    if kind == "control":
        dotted, v = rng.choice([("train.lr", f"3e-4{c}5"), ("model.n_layer", f"1{c}2"), ("train.compile", f"tr{c}ue"),
                                ("train.dtype", f"float{c}32"), ("data.dataset", f"{ctx['dataset']}{c}x"),
                                ("cerebras.mgmt_address", f"host{c}:9000"), ("cerebras.mount_dirs", f"/a{c}b"),
                                ("train.lr", f"'3e-4{c}'")])
        return _set_case("set_weird", dotted, v, values=renderings(v, v), allowed=dotted != "data.dataset")
    if kind == "long":
        dotted, v = rng.choice([("train.lr", "1" * 10_000), ("train.beta1", "1" + "0" * 9_999), ("model.n_layer", "9" * 10_000),
                                ("train.seed", "1" * 10_000), ("train.dtype", "a" * 10_000),
                                ("data.dataset", "d" * 10_000), ("train.compile", "t" * 10_000),
                                ("cerebras.target", "C" * 10_000), ("train.max_steps", "1" + "0" * 9_999)])
        return _set_case("set_weird", dotted, v, values=(v,), allowed=dotted != "data.dataset")
    n = rng.randint(2_000, 10_000)
    dotted = rng.choice(["train.max_steps", "train.lr", "train.compile", "cerebras.mount_dirs"])
    v = rng.choice(["[" * n + "]" * n, "{a=" * n + "1" + "}" * n])
    return _set_case("set_weird", dotted, v, values=(v,), allowed=TYPE_OF[dotted] is not list)


SET_GENERATORS = {"set_nonfinite": gen_set_nonfinite, "set_range": gen_set_range, "set_type": gen_set_type,
                  "set_syntax": gen_set_syntax, "set_choice": gen_set_choice, "set_weird": gen_set_weird}


def form_check(case: Case, preset, dataset: Path) -> list[str]:
    """The dashboard's launch form (app.launch.config_from_form) refuses the same value, with a
    ConfigError of one line naming the key."""
    from app.launch import config_from_form

    s = case.sets[0]
    dotted, eq, value = s.partition("=")
    section, _, key = dotted.partition(".")
    if not eq or f"{section}.{key}" not in TYPE_OF or dotted == "data.dataset" or value != value.strip():
        return []  # not a form field's value (the form has a field per key and picks the dataset itself)
    try:
        config_from_form(preset, str(dataset), {dotted: value})
    except ConfigError as e:
        msg = str(e)
        out = ["form: a message of several lines"] if "\n" in msg else []
        return out + ([] if appears(case.keys, msg) else ["form: key not named"])
    except Exception as e:  # noqa: BLE001
        return [f"form: traceback {type(e).__name__}"]
    return ["form: accepted"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("category", list(SET_GENERATORS))
def test_fuzz_set_values(fz, tmp_path, category, seed):
    from app.launch import Preset

    rng = random.Random(seed * 1000 + 100 + list(SET_GENERATORS).index(category))
    ctx = {"dataset": fz.dataset}
    form_dir = tmp_path / "form"
    form_dir.mkdir()
    base = form_dir / "base.toml"
    base.write_text(config_text(fz.dataset))
    preset = Preset("base", base, gconfig.load_config(base))
    results = []
    for _ in range(N_SET):
        case = SET_GENERATORS[category](rng, ctx)
        problems, err = fz.run(case)
        problems += form_check(case, preset, fz.dataset)
        s = case.sets[0]
        try:
            gconfig.parse_override(s)
        except ConfigError:
            pass
        except Exception as e:  # noqa: BLE001
            problems.append(f"parse_override: traceback {type(e).__name__}")
        results.append((case, problems, err))
    report(results)


# ---------------------------------------------------------------------------- the issue's own cases

def _issue_cases(dataset: Path) -> list[Case]:
    def t(fields):
        return config_text(dataset, fields)

    return [
        Case("issue", "train.lr = nan", text=t({"train.lr": "nan"}), source=("c.toml",), keys=("train.lr",),
             values=("nan",)),
        Case("issue", "train.eps = inf", text=t({"train.eps": "inf"}), source=("c.toml",), keys=("train.eps",),
             values=("inf",)),
        Case("issue", "model.n_layer = 1e23 (TOML float)", text=t({"model.n_layer": "1e23"}), source=("c.toml",),
             keys=("model.n_layer",), values=("1e23", "1e+23"), types=TYPE_WORDS[int]),
        Case("issue", "model.n_layer = 100000000000000000000000 (TOML integer)", text=t({"model.n_layer": str(10**23)}),
             source=("c.toml",), keys=("model.n_layer",), values=(str(10**23),), lenient=True),
        Case("issue", "--set model.n_layer=1e23", sets=["model.n_layer=1e23"], source=("--set",),
             keys=("model.n_layer",), values=("1e23", "1e+23"), types=TYPE_WORDS[int]),
        Case("issue", "an empty config", text="", source=("c.toml",), needles=("tiny",), allowed=False, direct=False),
        Case("issue", "a comment-only config", text="# nothing here\n# still nothing\n", source=("c.toml",),
             needles=("tiny",), allowed=False, direct=False),
        Case("issue", "a 5,000-character config path", config="p" * 4995 + ".toml", special="missing",
             source=("p" * 20,), allowed=False, direct=False),
        Case("issue", "cerebras = 1 at the top level", text="cerebras = 1\n" + t({}), source=("c.toml",),
             keys=("cerebras",), values=("1",)),
        Case("issue", "deeply nested TOML (10,000 levels)",
             text=t({"model.n_layer": "[" * 10_000 + "]" * 10_000}), source=("c.toml",), allowed=False),
        Case("issue", "--set train.lr=nan", sets=["train.lr=nan"], source=("--set",), keys=("train.lr",),
             values=("nan",)),
        Case("issue", "--set train.compile=1", sets=["train.compile=1"], source=("--set",), keys=("train.compile",),
             values=("1",), types=TYPE_WORDS[bool]),
        Case("issue", "--set train.lr='3e-4'", sets=["train.lr='3e-4'"], source=("--set",), keys=("train.lr",),
             values=("3e-4",), types=TYPE_WORDS[float]),
    ]


ISSUE_CASES = [c.what for c in _issue_cases(Path("/x"))]


@pytest.mark.parametrize("what", ISSUE_CASES)
def test_issue_case(fz, what):
    case = next(c for c in _issue_cases(fz.dataset) if c.what == what)
    problems, err = fz.run(case)
    assert not problems, f"{what}: {problems}; stderr: {err[:500]!r}"


def test_key_table_covers_every_field():
    """The fuzzer's key table is the config's: a new key gets fuzzed too (or this fails)."""
    have = {f"{s}.{f.name}" for s, cls in gconfig.SECTIONS.items() for f in dataclasses.fields(cls)}
    assert have == set(TYPE_OF), (sorted(have - set(TYPE_OF)), sorted(set(TYPE_OF) - have))


def test_fuzz_case_counts():
    """The issue asks for at least 1,000 bad config files and 300 --set values."""
    assert len(CONFIG_GENERATORS) * len(SEEDS) * N_CONFIG >= 1000
    assert len(SET_GENERATORS) * len(SEEDS) * N_SET >= 300


# ---------------------------------------------------------------------------- the real CLI, in a subprocess

SUBPROCESS_CASES = {
    "lr_nan": ("[train] lr = nan", lambda ds: ({"c.toml": config_text(ds, {"train.lr": "nan"})}, "c.toml", [])),
    "set_n_layer_1e23": ("--set model.n_layer=1e23",
                         lambda ds: ({"c.toml": config_text(ds)}, "c.toml", ["--set", "model.n_layer=1e23"])),
    "empty": ("an empty config", lambda ds: ({"c.toml": ""}, "c.toml", [])),
    "top_level_cerebras": ("cerebras = 1", lambda ds: ({"c.toml": "cerebras = 1\n" + config_text(ds)}, "c.toml", [])),
    "deep": ("10,000 nested arrays",
             lambda ds: ({"c.toml": config_text(ds, {"model.n_layer": "[" * 10_000 + "]" * 10_000})}, "c.toml", [])),
    "fifo": ("the config is a FIFO", lambda ds: ({"c.toml": "fifo"}, "c.toml", [])),
}


@pytest.mark.parametrize("name", list(SUBPROCESS_CASES))
def test_cli_subprocess_refuses(tmp_path, dataset, name):
    _, make = SUBPROCESS_CASES[name]
    files, config, extra = make(dataset)
    work, xdg, root = tmp_path / "cwd", tmp_path / "xdg", tmp_path / "runs"
    work.mkdir()
    xdg.mkdir()
    for fname, text in files.items():
        if text == "fifo":
            os.mkfifo(work / fname)
        else:
            (work / fname).write_text(text)
    before = snapshot(work)
    env = {k: v for k, v in os.environ.items() if k != "GIGAGPT_SETTINGS"}
    env["XDG_CONFIG_HOME"] = str(xdg)
    proc = run_cli("train", config, "--runs-root", root, *extra, check=False, cwd=work, env=env, timeout=60)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("gigagpt: error:"), proc.stderr[-2000:]
    assert not root.exists(), "a run directory was created"
    assert snapshot(work) == before
