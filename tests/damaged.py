"""Damaged runs: run directories broken the ways disks, crashes, editors, scripts and people break
them, built from real runs (tests/conftest.py: past_runs) beside good ones.

Every kind is a named function registered in KINDS with what a user should see: the statuses a
listing may give it, words its one-line problem must hold, whether it is a row at all, and row
values that must come out exactly (those of the run it was copied from, where the damage must not
change them). Test ids are the kinds' names, so a failure names the kind.

    build_root(root, past_runs)            every kind that lives in a shared root, beside the good runs
    build_kind_root(root, past_runs, kind) one kind beside a copy of `done`
    build_good_root(root, past_runs)       the good runs alone (what their rows must equal)

Checkpoint files are hard links to past_runs' (40 MB each): a kind that damages one replaces the
link (unlink, then write), never writes through it.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

GOOD = ("done", "stopped", "failed", "crashed")  # the real runs of past_runs, kept under their own ids
# row keys that damage elsewhere must not change (they come from the last valid train line, the evals
# and the checkpoints)
NUMBERS = ("step", "max_steps", "loss", "val_loss", "best_val", "tokens", "tok_s", "checkpoints", "last_checkpoint")
METRICS_STATUS = ("completed", "damaged")  # a run with a damaged log: its meta.json still says completed


@dataclass(frozen=True)
class Kind:
    name: str  # the function's name: the test id
    entry: str  # what it makes in the runs root
    part: str  # meta, field, metrics, log, config, checkpoint, root, cache
    build: Callable = field(repr=False)
    status: tuple | None = None  # statuses a listing may give it (None: any)
    problem: tuple | None = None  # words its problem line must hold (None: a problem is optional)
    no_problem: bool = False  # a problem line would be wrong: the run is not damaged
    listed: bool | None = True  # a row (True), no row (False), either (None)
    same_as: tuple = ()  # row keys equal to the source run's row in a clean root
    also: tuple = ()  # ids of other runs the kind makes in the root
    csv_same: bool | None = None  # its CSV export equals the source's (default: when same_as is NUMBERS)
    expect: dict = field(default_factory=dict)  # row keys with exact values
    source: str | None = "done"  # the real run it is a copy of
    root_scoped: bool = False  # damages the root itself (the summary cache): a root of its own
    big: bool = False  # tens of MB: kept out of the loops that would read it many times
    skip: str | None = None

    @property
    def ids(self) -> set[str]:
        """What a listing may call it: its name, or a name that is not UTF-8 made printable."""
        raw = self.entry.encode("utf-8", "surrogateescape")
        return {self.entry, raw.decode("utf-8", "replace"), raw.decode("utf-8", "backslashreplace")}

    @property
    def same_csv(self) -> bool:
        """The train and eval lines are the source's: so is the CSV export."""
        return self.same_as == NUMBERS if self.csv_same is None else self.csv_same


KINDS: dict[str, Kind] = {}


def _register(fn, part, entry=None, **expect) -> Kind:
    name = fn.__name__
    assert name not in KINDS, name
    kind = Kind(name=name, entry=entry or name.replace("_", "-"), part=part, build=fn, **expect)
    KINDS[name] = kind
    return kind


def run_kind(part, entry=None, **expect):
    """A kind made by damaging a copy of a real run: fn(run_dir)."""
    def register(fn):
        _register(fn, part, entry, **expect)
        return fn
    return register


def root_kind(entry=None, **expect):
    """A kind made in the runs root itself: fn(root, entry, past)."""
    expect.setdefault("source", None)
    def register(fn):
        _register(fn, "root", entry, **expect)
        return fn
    return register


def cache_kind(**expect):
    """Damage to the root's summary cache: fn(root), after the good runs are there."""
    def register(fn):
        _register(fn, "cache", None, source=None, root_scoped=True, listed=None, **expect)
        return fn
    return register


# ---------------------------------------------------------------------------- helpers

def four_damaged_runs(root: Path, past_runs: Path) -> None:
    """The four runs of the first round's damage test (test_runs, test_dash_browse): no meta.json,
    a torn one, garbage lines, a checkpoint that is not a zip."""
    (root / "no-meta").mkdir()
    (root / "no-meta" / "metrics.jsonl").write_text('{"kind":"train","step":1,"loss":2.0}\n')
    shutil.copytree(past_runs / "done", root / "bad-meta")
    (root / "bad-meta" / "meta.json").write_text('{"id": "bad-meta", "status": ')
    shutil.copytree(past_runs / "done", root / "garbage")
    with open(root / "garbage" / "metrics.jsonl", "ab") as f:
        f.write(b"\x00\xff binary junk\nnot json at all\n[1, 2, 3]\n")
    shutil.copytree(past_runs / "done", root / "bad-ckpt")
    (ckpt,) = sorted((root / "bad-ckpt" / "checkpoints").glob("step_*.pt"))
    ckpt.write_bytes(b"this is not a zip file")


def copy_run(src: Path, dst: Path, rename: bool = True) -> Path:
    """A copy of a real run under a new id (meta.json's id and name follow, unless not `rename`:
    a directory a person copied or moved); checkpoints hard-linked."""
    def copy(s, d):
        if os.path.basename(os.path.dirname(s)) == "checkpoints":
            os.link(s, d)
        else:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, copy_function=copy, symlinks=True)
    meta_path = dst / "meta.json"
    if rename and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        meta["id"] = meta["name"] = dst.name
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return dst


def replace(path: Path, data: bytes | str) -> None:
    """New content under `path` without writing through a hard link or a symlink."""
    path = Path(path)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def meta_of(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())


def set_meta(run: Path, **changes) -> None:
    meta = meta_of(run)
    meta.update(changes)
    replace(run / "meta.json", json.dumps(meta, indent=2) + "\n")  # NaN, 1e308 and 10**400 as Python writes them


def drop_meta(run: Path, *keys) -> None:
    meta = meta_of(run)
    for key in keys:
        meta.pop(key, None)
    replace(run / "meta.json", json.dumps(meta, indent=2) + "\n")


def metric_lines(run: Path) -> list[bytes]:
    return (run / "metrics.jsonl").read_bytes().splitlines(keepends=True)


def set_lines(run: Path, lines) -> None:
    replace(run / "metrics.jsonl", b"".join(x if isinstance(x, bytes) else x.encode() for x in lines))


def append(run: Path, *lines) -> None:
    set_lines(run, metric_lines(run) + [x if isinstance(x, bytes) else x.encode() for x in lines])


def line(**rec) -> str:
    """One metrics line as the trainer writes it (compact; NaN/Infinity as Python writes them)."""
    return json.dumps(rec, separators=(",", ":")) + "\n"


def train_line(step, loss=0.123, **extra) -> str:
    return line(kind="train", step=step, loss=loss, lr=1e-3, grad_norm=1.0, tokens=256 * 8, tok_s=99.0,
                mfu=None, step_time=0.5, rss=1 << 28, mem_alloc=None, mem_peak=None, time=1795949100.0, **extra)


def edit_lines(run: Path, match: str, edit) -> None:
    """Rewrite the metrics lines holding `match` (e.g. '"kind":"eval"') with edit(record) -> text."""
    out = []
    for raw in metric_lines(run):
        out.append(edit(json.loads(raw)).encode() if match.encode() in raw else raw)
    set_lines(run, out)


def insert_before(run: Path, match: str, data: bytes) -> None:
    """`data` in the middle of metrics.jsonl: before the first line holding `match`."""
    lines = metric_lines(run)
    i = next(i for i, raw in enumerate(lines) if match.encode() in raw)
    set_lines(run, lines[:i] + [data] + lines[i:])


def outside(root: Path, name: str) -> Path:
    """A directory beside the runs root, for targets that symlinks in the root point at."""
    path = Path(root).parent / f"{Path(root).name}.outside" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint(run: Path) -> Path:
    (ckpt,) = (run / "checkpoints").glob("step_*.pt")
    return ckpt


GARBAGE = bytes(range(256)) * 4  # every byte value, newlines included
NOT_UTF8 = b"caf\xe9 \xff\xfe \xc3\x28"  # Latin-1 and invalid sequences


# ---------------------------------------------------------------------------- meta.json: the file

@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_missing(run):
    (run / "meta.json").unlink()


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_empty(run):
    replace(run / "meta.json", b"")


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_truncated(run):
    text = (run / "meta.json").read_bytes()
    replace(run / "meta.json", text[: len(text) // 2])  # mid-JSON: a crash during a non-atomic write


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_binary(run):
    replace(run / "meta.json", GARBAGE)


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_nul_bytes(run):
    size = (run / "meta.json").stat().st_size
    replace(run / "meta.json", b"\x00" * size)  # what a power cut leaves of a file whose size was written


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_not_utf8(run):
    text = (run / "meta.json").read_bytes()
    replace(run / "meta.json", text.replace(b'"preset": "tiny"', b'"preset": "' + NOT_UTF8 + b'"'))


@run_kind("meta")  # a BOM written by an editor: accepted or damaged, never a crash
def meta_utf8_bom(run):
    replace(run / "meta.json", b"\xef\xbb\xbf" + (run / "meta.json").read_bytes())


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_json_array(run):
    replace(run / "meta.json", "[1, 2, 3]\n")


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_json_number(run):
    replace(run / "meta.json", "42\n")


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_json_string(run):
    replace(run / "meta.json", '"completed"\n')


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_json_null(run):
    replace(run / "meta.json", "null\n")


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_deep_nesting(run):
    replace(run / "meta.json", "[" * 100_000 + "\n")  # RecursionError bait for a recursive parser


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_deep_nesting_object(run):
    replace(run / "meta.json", '{"a":' * 50_000 + "1" + "}" * 50_000 + "\n")


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_huge_valid(run):
    """A valid object padded to 5 MB: meta.json is at most 1 MiB (docs/run-format.md)."""
    set_meta(run, padding="x" * (5 << 20))


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_huge_garbage(run):
    replace(run / "meta.json", GARBAGE * (5 << 10))  # 5 MB


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_is_directory(run):
    (run / "meta.json").unlink()
    (run / "meta.json").mkdir()


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_symlink_to_itself(run):
    (run / "meta.json").unlink()
    (run / "meta.json").symlink_to("meta.json")


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_dangling_symlink(run):
    (run / "meta.json").unlink()
    (run / "meta.json").symlink_to("gone.json")


@run_kind("meta", status=("damaged",), problem=("meta.json",))
def meta_fifo(run):
    """A named pipe: open() for reading blocks until a writer comes. A reader must not hang."""
    (run / "meta.json").unlink()
    os.mkfifo(run / "meta.json")


@run_kind("meta", status=("damaged",), problem=("status",))
def meta_status_missing(run):
    drop_meta(run, "status")


@run_kind("meta", status=("damaged",), problem=("status",))
def meta_duplicate_keys(run):
    text = (run / "meta.json").read_text()
    replace(run / "meta.json", text.replace('"status": "completed",', '"status": "completed", "status": 5,'))


@run_kind("meta", status=("completed",), no_problem=True, same_as=NUMBERS)
def meta_unknown_keys(run):
    """Keys a newer trainer may add: not damage."""
    set_meta(run, future_key={"nested": [1, 2]}, another="text")


@run_kind("meta", same_as=NUMBERS)
def meta_id_names_another_run(run):
    set_meta(run, id="someone-else")


# A name is any text of at most 100 characters, shown without control or bidi characters: not damage.
@run_kind("meta", status=("completed",), same_as=NUMBERS)
def meta_name_ansi_escapes(run):
    set_meta(run, name="\x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b[2J")


@run_kind("meta", status=("completed",), same_as=NUMBERS)
def meta_name_newlines(run):
    set_meta(run, name="two\nlines\rand\ttab\x00nul")


@run_kind("meta", status=("completed",), same_as=NUMBERS)
def meta_name_bidi(run):
    set_meta(run, name="run\u202egnp.exe\u2066x\u2069\u200f\u2028end")


@run_kind("meta", status=("damaged",), problem=("name",))
def meta_name_very_long(run):
    set_meta(run, name="n" * 100_000)


@run_kind("meta")
def meta_name_empty(run):
    set_meta(run, name="")


@run_kind("meta", status=("damaged",), problem=("tags",))
def meta_tags_control_chars(run):
    set_meta(run, tags=["ok", "\x1b[2Jclear", "new\nline", "rtl\u202eevil", "bell\x07"])


# ---------------------------------------------------------------------------- meta.json: every field

NAN, BIG, HUGE_INT = float("nan"), 1e308, 10 ** 400
WRONG = {  # variant -> a value of the wrong type or range
    "str": "6", "list": [6], "obj": {"n": 6}, "null": None, "neg": -6, "zero": 0, "nan": NAN, "big": BIG,
    "hugeint": HUGE_INT, "bool": True, "float": 6.5, "num": 7, "text": "gigagpt train tiny",
    "nonstr": [1, None], "nested": [["a"]], "unknown": "paused", "empty": "",
}
TIME = ("str", "list", "obj", "neg", "nan", "big", "hugeint", "bool")
COUNT = ("str", "list", "obj", "neg", "nan", "big", "hugeint", "bool", "float")
TEXT = ("num", "list", "obj", "bool", "nan")
FIELDS = {
    "heartbeat": TIME, "created": TIME, "updated": TIME,
    "world_size": COUNT + ("zero",), "pid": COUNT + ("zero",), "step": COUNT, "max_steps": COUNT,
    "params": COUNT, "tokens_per_step": COUNT,
    "name": TEXT, "host": TEXT, "device": TEXT, "failure": TEXT, "preset": TEXT,
    "status": ("unknown", "null", "num", "list", "obj", "bool", "empty"),
    "tags": ("text", "nonstr", "obj", "num", "bool", "nested"),
    "command": ("text", "obj", "num", "nonstr", "bool"),
    "versions": ("text", "list", "num", "bool", "nonstr"),
}
WRONG["nonstr_versions"] = {"torch": 2, "python": None}


def _field_kind(key: str, variant: str):
    value = WRONG["nonstr_versions"] if (key, variant) == ("versions", "nonstr") else WRONG[variant]

    def build(run):
        set_meta(run, **{key: value})

    build.__name__ = build.__qualname__ = f"meta_{key}_{variant}"
    build.__doc__ = f"meta.json's {key} = {json.dumps(value)[:40]}"
    if variant == "nan":  # NaN is not JSON (meta.json is read strictly): the file is what is wrong
        return run_kind("field", status=("damaged",), problem=("meta.json",))(build)
    if variant in ("big", "hugeint") and FIELDS[key] is TIME or variant == "hugeint" and key != "pid":
        # finite and >= 0, as the rules go, but absurd: damaged or shown as it is, never a crash
        return run_kind("field")(build)
    return run_kind("field", status=("damaged",), problem=(key,))(build)


for _key, _variants in FIELDS.items():
    for _variant in _variants:
        _field_kind(_key, _variant)


# ---------------------------------------------------------------------------- metrics.jsonl

@run_kind("metrics")  # a run that never logged: listed, no numbers
def metrics_missing(run):
    (run / "metrics.jsonl").unlink()


@run_kind("metrics")
def metrics_empty(run):
    replace(run / "metrics.jsonl", b"")


@run_kind("metrics")
def metrics_only_a_torn_line(run):
    replace(run / "metrics.jsonl", metric_lines(run)[1][:40])


@run_kind("metrics", same_as=NUMBERS)
def metrics_torn_last_line(run):
    append(run, train_line(8)[:30])  # a writer mid-line: left for the next read


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",))
def metrics_binary(run):
    replace(run / "metrics.jsonl", GARBAGE * 8)


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)
def metrics_binary_lines_appended(run):
    append(run, b"\x00\xff binary junk\n", GARBAGE + b"\n")


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)
def metrics_not_utf8_line(run):
    append(run, b'{"kind":"train","step":8,"loss":0.5,"note":"' + NOT_UTF8 + b'"}\n')


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)
def metrics_nul_block(run):
    insert_before(run, '"kind":"eval"', b"\x00" * 4096 + b"\n")  # a crash's zero-filled block


def _bad_step_kind(variant: str, raw: str):
    def build(run):
        append(run, train_line(8).replace('"step":8', f'"step":{raw}'))

    build.__name__ = build.__qualname__ = f"metrics_step_{variant}"
    build.__doc__ = f"a train line with step {raw}"
    return run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)(build)


for _variant, _raw in (("string", '"8"'), ("null", "null"), ("negative", "-1"), ("float", "1.5"),
                       ("1e30", "1e30"), ("bool", "true"), ("huge_int", "1" + "0" * 30), ("list", "[8]"),
                       ("nan", "NaN")):
    _bad_step_kind(_variant, _raw)


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)
def metrics_step_missing(run):
    append(run, line(kind="train", loss=0.5, tokens=9, tok_s=1.0, time=1795949100.0))


def _edit_value_kind(name: str, match: str, key: str, value, same_as=NUMBERS, expect=None):
    def build(run):
        edit_lines(run, match, lambda rec: line(**{**rec, key: value}))

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"{key} = {value!r} in the lines holding {match}"
    return run_kind("metrics", status=METRICS_STATUS, same_as=same_as, expect=expect or {}, csv_same=False)(build)


INF = float("inf")
TRAIN_4, TRAIN_6 = '"kind":"train","step":4,', '"kind":"train","step":6,'
_edit_value_kind("metrics_loss_nan", TRAIN_4, "loss", NAN)  # not the last train line: numbers unchanged
_edit_value_kind("metrics_loss_infinity", TRAIN_4, "loss", INF)
_edit_value_kind("metrics_loss_minus_infinity", TRAIN_4, "loss", -INF)
# A number that is not a finite one reads as missing; the line stays (docs/run-format.md).
_edit_value_kind("metrics_last_loss_nan", TRAIN_6, "loss", NAN, same_as=("step", "val_loss", "best_val"),
                 expect={"loss": None})
_edit_value_kind("metrics_last_loss_infinity", TRAIN_6, "loss", INF, same_as=("step", "val_loss", "best_val"),
                 expect={"loss": None})
_edit_value_kind("metrics_val_loss_nan", '"kind":"eval"', "val_loss", NAN, same_as=("step", "loss", "tokens"),
                 expect={"val_loss": None, "best_val": None})
_edit_value_kind("metrics_val_loss_infinity", '"kind":"eval"', "val_loss", INF, same_as=("step", "loss", "tokens"),
                 expect={"val_loss": None, "best_val": None})
_edit_value_kind("metrics_val_loss_minus_infinity", '"kind":"eval"', "val_loss", -INF,
                 same_as=("step", "loss", "tokens"), expect={"val_loss": None, "best_val": None})
_edit_value_kind("metrics_tokens_huge_int", TRAIN_6, "tokens", HUGE_INT, same_as=("step", "loss", "val_loss"))
_edit_value_kind("metrics_time_nan", TRAIN_6, "time", NAN, same_as=("step", "loss", "val_loss"))


@run_kind("metrics", status=METRICS_STATUS, expect={"loss": None, "tok_s": None})
def metrics_field_types_wrong(run):
    """A train line whose step is right and whose numbers are not numbers: the line stays, its
    numbers read as missing."""
    append(run, line(kind="train", step=8, loss="low", lr=[1], grad_norm={}, tokens="many", tok_s=True,
                     mfu="x", step_time=None, rss=-1, mem_alloc=[], mem_peak={}, time="now"))


@run_kind("metrics", status=METRICS_STATUS, same_as=("step", "loss", "tokens"))
def metrics_eval_value_text(run):
    append(run, line(kind="eval", step=8, val_loss="good", time=1795949100.0))


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)
def metrics_json_array_lines(run):
    append(run, "[1, 2, 3]\n", '["train", 8, 0.5]\n')


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)
def metrics_scalar_lines(run):
    append(run, "42\n", '"text"\n', "null\n", "true\n", "1e999\n")


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)
def metrics_brace_lines_not_json(run):
    append(run, "{not json}\n", '{"kind":"train","step":8,}\n', '{"kind": "eval" "step": 8}\n')


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)
def metrics_deep_array(run):
    insert_before(run, '"kind":"eval"', b"[" * 100_000 + b"\n")  # RecursionError bait


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)
def metrics_deep_object(run):
    insert_before(run, '"kind":"eval"', b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"\n")


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS, big=True)
def metrics_10mb_line(run):
    insert_before(run, '"kind":"eval"', b"x" * (10 << 20) + b"\n")


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS, big=True)
def metrics_50mb_garbage(run):
    """50 MB of garbage lines before the run's own lines (the one huge case: reading it is slow)."""
    junk = (b"garbage " * 127 + b"\n") * (50 << 10)  # 1 KiB lines
    set_lines(run, [junk] + metric_lines(run))


@run_kind("metrics", status=METRICS_STATUS, same_as=NUMBERS)
def metrics_crlf(run):
    set_lines(run, [raw.rstrip(b"\n") + b"\r\n" for raw in metric_lines(run)])


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)
def metrics_unknown_kind(run):
    """A kind the table does not have is a bad line (counted, skipped)."""
    append(run, line(kind="telemetry", step=8, watts=300, time=1795949100.0))


def _bad_resume_kind(variant: str, raw: str):
    def build(run):
        append(run, f'{{"kind":"event","event":"resume","step":{raw},"time":1795949100.0}}\n')

    build.__name__ = build.__qualname__ = f"metrics_resume_step_{variant}"
    build.__doc__ = f"a resume event with step {raw}: no roll-back"
    return run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)(build)


for _variant, _raw in (("string", '"2"'), ("null", "null"), ("negative", "-1"), ("float", "2.5"),
                       ("bool", "true")):
    _bad_resume_kind(_variant, _raw)


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",), same_as=NUMBERS)
def metrics_resume_step_missing(run):
    """A resume without a step is a bad line (it would void the whole log as a resume to 0)."""
    append(run, line(kind="event", event="resume", time=1795949100.0))


@run_kind("metrics", status=METRICS_STATUS, expect={"loss": 0.25, "val_loss": None, "best_val": None})
def metrics_resumes_out_of_order(run):
    """Resumed at 4 (voids the step-6 train and eval lines), then at 2: the newest resume wins, and
    each voids only what was written before it with a higher step (docs/run-format.md)."""
    append(run, line(kind="event", event="resume", step=4, time=1795949100.0), train_line(6, loss=0.5),
           line(kind="event", event="resume", step=2, time=1795949101.0), train_line(4, loss=0.25))


@run_kind("metrics", status=METRICS_STATUS, same_as=NUMBERS)
def metrics_resume_beyond_the_end(run):
    append(run, line(kind="event", event="resume", step=100, time=1795949100.0))


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",))
def metrics_is_directory(run):
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",))
def metrics_symlink_loop(run):
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to("metrics.jsonl")


@run_kind("metrics", status=METRICS_STATUS, problem=("metrics.jsonl",))
def metrics_fifo(run):
    (run / "metrics.jsonl").unlink()
    os.mkfifo(run / "metrics.jsonl")


# ---------------------------------------------------------------------------- train.log

@run_kind("log", status=("completed",), same_as=NUMBERS)
def log_binary(run):
    replace(run / "train.log", GARBAGE + NOT_UTF8 + b"\x1b[2J\x1b]0;owned\x07")


@run_kind("log", status=("completed",), same_as=NUMBERS)
def log_is_directory(run):
    (run / "train.log").unlink()
    (run / "train.log").mkdir()


@run_kind("log", status=("completed",), same_as=NUMBERS)
def log_fifo(run):
    (run / "train.log").unlink()
    os.mkfifo(run / "train.log")


@run_kind("log", status=("completed",), same_as=NUMBERS)
def log_one_long_line(run):
    replace(run / "train.log", b"y" * (3 << 20))  # no newline at all


# ---------------------------------------------------------------------------- config.toml

@run_kind("config", same_as=NUMBERS)
def config_missing(run):
    (run / "config.toml").unlink()


@run_kind("config", same_as=NUMBERS)
def config_empty(run):
    replace(run / "config.toml", b"")


@run_kind("config", same_as=NUMBERS)
def config_invalid_toml(run):
    replace(run / "config.toml", "[model\nn_layer = = 2\n")


@run_kind("config", same_as=NUMBERS)
def config_binary(run):
    replace(run / "config.toml", GARBAGE)


@run_kind("config", same_as=NUMBERS)
def config_not_utf8(run):
    replace(run / "config.toml", (run / "config.toml").read_bytes() + b'\n[extra]\nnote = "' + NOT_UTF8 + b'"\n')


@run_kind("config", same_as=NUMBERS)
def config_is_directory(run):
    (run / "config.toml").unlink()
    (run / "config.toml").mkdir()


@run_kind("config", same_as=NUMBERS)
def config_fifo(run):
    (run / "config.toml").unlink()
    os.mkfifo(run / "config.toml")


@run_kind("config", same_as=NUMBERS)
def config_unknown_keys(run):
    text = (run / "config.toml").read_text()
    replace(run / "config.toml", text.replace("[train]\n", "[train]\nturbo = true\n") + "\n[mystery]\nx = 1\n")


@run_kind("config", same_as=NUMBERS)
def config_wrong_types(run):
    text = (run / "config.toml").read_text()
    for old, new in (("n_layer = 2", 'n_layer = "two"'), ("lr = 0.001", "lr = [0.001]"),
                     ("max_steps = 6", "max_steps = -6")):
        text = text.replace(old, new)
    replace(run / "config.toml", text)


@run_kind("config", same_as=NUMBERS)
def config_sections_not_tables(run):
    replace(run / "config.toml", 'model = 5\ntrain = "fast"\ndata = [1, 2]\n')


@run_kind("config", same_as=NUMBERS)
def config_deep_nesting(run):
    replace(run / "config.toml", "x = " + "[" * 50_000 + "]" * 50_000 + "\n")  # RecursionError bait


# ---------------------------------------------------------------------------- checkpoints
# Copies of `stopped` (resumable but for the damage) where the only checkpoint is damaged: resume
# must refuse rather than start over from step 0 or fail with a traceback.

CKPT_DAMAGED = {"status": ("stopped", "damaged"), "problem": ("checkpoint",), "source": "stopped"}


@run_kind("checkpoint", **CKPT_DAMAGED)
def checkpoint_not_a_zip(run):
    replace(checkpoint(run), b"this is not a zip file\n" * 100)


@run_kind("checkpoint", **CKPT_DAMAGED)
def checkpoint_truncated(run):
    ckpt = checkpoint(run)
    with open(ckpt, "rb") as f:
        head = f.read(ckpt.stat().st_size // 2)  # the zip's central directory (at its end) is gone
    replace(ckpt, head)


@run_kind("checkpoint", **CKPT_DAMAGED)
def checkpoint_empty(run):
    replace(checkpoint(run), b"")


@run_kind("checkpoint", **CKPT_DAMAGED)
def checkpoint_is_directory(run):
    ckpt = checkpoint(run)
    ckpt.unlink()
    ckpt.mkdir()
    (ckpt / "data.pkl").write_bytes(b"junk")


@run_kind("checkpoint", **CKPT_DAMAGED)
def checkpoint_fifo(run):
    ckpt = checkpoint(run)
    ckpt.unlink()
    os.mkfifo(ckpt)


@run_kind("checkpoint", **CKPT_DAMAGED)
def checkpoint_symlink_loop(run):
    ckpt = checkpoint(run)
    ckpt.unlink()
    ckpt.symlink_to(ckpt.name)


@run_kind("checkpoint", **CKPT_DAMAGED)
def checkpoint_dcp_without_metadata(run):
    ckpt = checkpoint(run)
    ckpt.unlink()
    dcp = ckpt.with_suffix(".dcp")
    dcp.mkdir()
    (dcp / "__0_0.distcp").write_bytes(b"shard")
    (dcp / "extra.pt").write_bytes(b"not a zip")


@run_kind("checkpoint", **CKPT_DAMAGED)
def checkpoint_mdl_not_hdf5(run):
    ckpt = checkpoint(run)
    ckpt.unlink()
    ckpt.with_suffix(".mdl").write_bytes(b"not an HDF5 file")


@run_kind("checkpoint", status=("stopped", "damaged"), problem=("checkpoint",), source="stopped")
def checkpoints_is_a_file(run):
    shutil.rmtree(run / "checkpoints")
    (run / "checkpoints").write_bytes(b"a file where the checkpoint directory belongs")


@run_kind("checkpoint", status=("completed",), same_as=NUMBERS)
def checkpoint_temp_leftovers(run):
    """What a kill mid-write leaves: temp names are never checkpoints."""
    (run / "checkpoints" / ".step_00000008.pt.tmp-12345").write_bytes(b"half a checkpoint")
    (run / "checkpoints" / ".step_00000008.dcp.tmp").mkdir()


@run_kind("checkpoint", status=("completed",), same_as=("step", "loss", "val_loss", "last_checkpoint"))
def checkpoint_bad_names(run):
    """step_x.pt, step_.pt, step_-1.pt are not step_%08d names: never a run's checkpoint."""
    for name in ("step_x.pt", "step_.pt", "step_-1.pt", "step_1e3.pt", "step_0000000A.pt"):
        (run / "checkpoints" / name).write_bytes(b"junk")


@run_kind("checkpoint", status=("completed",), same_as=NUMBERS)
def checkpoint_unrelated_files(run):
    (run / "checkpoints" / "README.txt").write_text("notes\n")
    (run / "checkpoints" / "best").mkdir()


# ---------------------------------------------------------------------------- the runs root
# (The directories with odd names are runs a person copied or renamed: their meta.json still says
# id "done".)

# docs/run-format.md, "Recognising a run": in a root, a directory (or a symlink to one) not named
# .*, holding meta.json, train.log or metrics.jsonl; a symlink loop, a dangling link or a file is not.

@root_kind(entry="loop", listed=False)
def root_symlink_loop(root, entry, past):
    (root / entry).symlink_to(entry)  # ln -s loop loop


@root_kind(listed=False)
def root_dangling_symlink(root, entry, past):
    (root / entry).symlink_to(root / "no-such-run")


@root_kind(listed=False)
def root_symlink_to_a_file(root, entry, past):
    target = outside(root, entry) / "notes.txt"
    target.write_text("not a run\n")
    (root / entry).symlink_to(target)


@root_kind(listed=True, status=("completed",), same_as=NUMBERS)
def root_symlink_to_a_run_outside(root, entry, past):
    """A link to a real run elsewhere: deleting the link's run must never reach the target."""
    target = copy_run(past / "done", outside(root, entry) / "elsewhere")
    (root / entry).symlink_to(target)


@root_kind(listed=True, status=("completed",), same_as=NUMBERS, also=("root-symlink-to-a-sibling-target",))
def root_symlink_to_a_sibling(root, entry, past):
    sibling = copy_run(past / "done", root / f"{entry}-target")
    (root / entry).symlink_to(sibling.name)


@root_kind(entry="tiny-20260101-120000", listed=False)
def root_file_named_like_a_run(root, entry, past):
    (root / entry).write_text('{"id": "tiny-20260101-120000", "status": "completed"}\n')


@root_kind(entry="nano-20260101-120000", listed=False)
def root_fifo_named_like_a_run(root, entry, past):
    os.mkfifo(root / entry)


@root_kind(listed=False)
def root_empty_directory(root, entry, past):
    (root / entry).mkdir()


@root_kind(listed=False)
def root_directory_with_only_a_config(root, entry, past):
    (root / entry).mkdir()
    shutil.copy(past / "done" / "config.toml", root / entry / "config.toml")


@root_kind(entry=".hidden-run", listed=False)
def root_hidden_run(root, entry, past):
    """Names starting with '.' under a runs root are never runs (docs/run-format.md)."""
    copy_run(past / "done", root / entry)


@root_kind(listed=None, skip="chmod 000 does not stop root" if os.geteuid() == 0 else None)
def root_unreadable_run(root, entry, past):
    run = copy_run(past / "done", root / entry)
    run.chmod(0)


@root_kind(entry="my run", same_as=NUMBERS)
def root_name_with_spaces(root, entry, past):
    copy_run(past / "done", root / entry, rename=False)


@root_kind(entry="r\u00fcn-\u540d\u524d", same_as=NUMBERS)
def root_name_unicode(root, entry, past):
    copy_run(past / "done", root / entry, rename=False)


@root_kind(entry="-rf", same_as=NUMBERS)
def root_name_leading_dash(root, entry, past):
    copy_run(past / "done", root / entry, rename=False)


@root_kind(entry="ctl\x1b[31m\nname\u202e", same_as=NUMBERS)
def root_name_control_chars(root, entry, past):
    copy_run(past / "done", root / entry, rename=False)


@root_kind(entry="b\udcffd-bytes", same_as=NUMBERS)
def root_name_not_utf8(root, entry, past):
    """A directory name that is not UTF-8 (b'b\\xffd-bytes'): Python sees a surrogate escape."""
    copy_run(past / "done", root / entry, rename=False)


# ---------------------------------------------------------------------------- the summary cache
# A damaged cache must read as no cache: the rows equal a clean root's (docs/run-format.md:
# "deleting it is always safe").

CACHE = ".summaries.json"


def list_once(root: Path) -> None:
    """The product's own listing writes the cache (its real format, real stamps)."""
    import contextlib
    import io

    from gigagpt.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(["runs", "list", "--runs-root", str(root), "--json"])
        except BaseException:  # noqa: BLE001, S110 - a listing that crashes on good runs fails elsewhere
            pass


def real_cache(root: Path) -> dict:
    """The cache as the product writes it after one listing (the documented format if it wrote none)."""
    list_once(root)
    try:
        cache = json.loads((root / CACHE).read_text())
        if isinstance(cache, dict) and isinstance(cache.get("runs"), dict) and cache["runs"]:
            return cache
    except (OSError, ValueError):
        pass
    runs = {}
    for run in GOOD:
        stamps = {}
        for key, name in (("meta_stamp", "meta.json"), ("metrics_stamp", "metrics.jsonl"), ("ckpt_stamp", "checkpoints")):
            try:
                st = os.stat(root / run / name)
                stamps[key] = [st.st_size, st.st_mtime_ns, st.st_ino]
            except OSError:
                stamps[key] = None
        runs[run] = {**stamps, "meta": {"status": "completed"}, "metrics": {"offset": 0}, "ckpt": {"count": 0}}
    return {"version": 1, "runs": runs}


def is_stamp(value) -> bool:
    """[size, mtime_ns, inode]: what says an entry is still fresh. Kept, so the entry is believed."""
    return isinstance(value, list) and len(value) == 3 and all(type(v) is int for v in value)


def swap_types(value, depth=0):
    """Every leaf of another type (stamps kept): numbers as text, text as lists, lists as numbers..."""
    if is_stamp(value):
        return value
    if isinstance(value, dict):
        return {k: swap_types(v, depth + 1) for k, v in value.items()}
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, (int, float)):
        return [str(value)]
    if isinstance(value, str):
        return {"text": value} if depth % 2 else 12345
    if isinstance(value, list):
        return "a list"
    return {"was": None}


def nan_leaves(value):
    if is_stamp(value):
        return value
    if isinstance(value, dict):
        return {k: nan_leaves(v) for k, v in value.items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return NAN if value % 2 else -INF
    return value


def write_cache(root: Path, data) -> None:
    replace(root / CACHE, data if isinstance(data, (bytes, str)) else json.dumps(data))


@cache_kind()
def cache_garbage_text(root):
    write_cache(root, "this is not json\n")


@cache_kind()
def cache_binary(root):
    write_cache(root, GARBAGE)


@cache_kind()
def cache_empty(root):
    write_cache(root, b"")


@cache_kind()
def cache_truncated(root):
    text = json.dumps(real_cache(root))
    write_cache(root, text[: len(text) // 2])


@cache_kind()
def cache_wrong_version(root):
    write_cache(root, {**real_cache(root), "version": 999})


@cache_kind()
def cache_version_text(root):
    cache = real_cache(root)
    write_cache(root, {**cache, "version": str(cache.get("version"))})


@cache_kind()
def cache_json_array(root):
    write_cache(root, [1, 2, 3])


@cache_kind()
def cache_runs_a_list(root):
    write_cache(root, {**real_cache(root), "runs": [1, 2, 3]})


@cache_kind()
def cache_runs_null(root):
    write_cache(root, {**real_cache(root), "runs": None})


@cache_kind()
def cache_entries_not_objects(root):
    cache = real_cache(root)
    write_cache(root, {**cache, "runs": {k: v for k, v in zip(cache["runs"], (5, "x", None, [1]))}})


@cache_kind()
def cache_entry_values_garbage(root):
    """Stamps that match the files, every other value garbage: a cache that trusts its stamps and
    not its values shows (or crashes on) the garbage."""
    cache = real_cache(root)
    cache["runs"] = {k: {key: (v if is_stamp(v) else "garbage") for key, v in e.items()} if isinstance(e, dict) else e
                     for k, e in cache["runs"].items()}
    write_cache(root, cache)


@cache_kind()
def cache_entry_leaves_wrong_types(root):
    cache = real_cache(root)
    write_cache(root, {**cache, "runs": swap_types(cache["runs"])})


@cache_kind()
def cache_entry_leaves_nan(root):
    cache = real_cache(root)
    write_cache(root, {**cache, "runs": nan_leaves(cache["runs"])})


@cache_kind()
def cache_entries_for_runs_that_do_not_exist(root):
    cache = real_cache(root)
    ghost = next(iter(cache["runs"].values()))
    write_cache(root, {**cache, "runs": {**cache["runs"], "ghost": ghost, "../escape": ghost, "": ghost}})


@cache_kind()
def cache_deep_nesting(root):
    write_cache(root, "[" * 100_000)


@cache_kind()
def cache_huge_garbage(root):
    write_cache(root, GARBAGE * (5 << 10))


@cache_kind()
def cache_is_directory(root):
    (root / CACHE).unlink(missing_ok=True)
    (root / CACHE).mkdir()


@cache_kind()
def cache_symlink_loop(root):
    (root / CACHE).unlink(missing_ok=True)
    (root / CACHE).symlink_to(CACHE)


@cache_kind()
def cache_fifo(root):
    (root / CACHE).unlink(missing_ok=True)
    os.mkfifo(root / CACHE)


# ---------------------------------------------------------------------------- building roots

def build_good_root(root: Path, past: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in GOOD:
        copy_run(past / name, root / name)
        if name in GOOD:  # the real runs keep their ids: meta.json as the trainer wrote it
            shutil.copy2(past / name / "meta.json", root / name / "meta.json")
    return root


def make(kind: Kind, root: Path, past: Path) -> None:
    if kind.root_scoped:
        kind.build(root)
    elif kind.part == "root":
        kind.build(root, kind.entry, past)
    else:
        kind.build(copy_run(past / kind.source, root / kind.entry))


def build_root(root: Path, past: Path, kinds=None) -> Path:
    """The good runs and every kind that shares a root (not the cache kinds), each once."""
    build_good_root(root, past)
    for kind in kinds if kinds is not None else KINDS.values():
        if not kind.root_scoped and not kind.skip:
            make(kind, root, past)
    return root


def build_kind_root(root: Path, past: Path, kind: Kind) -> Path:
    """One kind beside the good runs (all four for a cache kind, `done` alone otherwise)."""
    root.mkdir(parents=True, exist_ok=True)
    if kind.root_scoped:
        build_good_root(root, past)
    else:
        copy_run(past / "done", root / "done")
        shutil.copy2(past / "done" / "meta.json", root / "done" / "meta.json")
    if not kind.skip:
        make(kind, root, past)
    return root


def fifos(path: Path) -> list[Path]:
    """The named pipes under `path` (not following symlinks)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            try:
                if stat.S_ISFIFO(os.lstat(p).st_mode):
                    found.append(Path(p))
            except OSError:
                pass
    return found


def tree(path: Path) -> dict[str, tuple]:
    """What a directory holds (names, kinds, sizes, mtimes; not following symlinks), to show
    nothing under it changed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            out[os.path.relpath(p, path)] = (stat.S_IFMT(st.st_mode), st.st_size if stat.S_ISREG(st.st_mode) else 0,
                                             st.st_mtime_ns if stat.S_ISREG(st.st_mode) else 0, link)
    return out


# ---------------------------------------------------------------------------- FIFO watchdog

class FifoWatch:
    """Notices a thread of this process (or of a child) blocked opening a named pipe (the kernel's
    wait channel `wait_for_partner`: open() of a FIFO with no writer blocks for ever), counts it and
    frees it by opening and closing the write end of every FIFO under the watched directories: the
    reader's open() returns and it reads an empty file. Callers compare `hangs` before and after."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.dirs: set[Path] = set()
        self.hangs = 0
        self.children = 0  # > 0 while a subprocess whose FIFO opens count is running
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.watch, name="fifo-watch", daemon=True)
        self.thread.start()

    def watch_dir(self, path: Path) -> None:
        with self.lock:
            self.dirs.add(Path(path))

    def blocked(self) -> bool:
        import psutil

        pids = [os.getpid()]
        if self.children:  # scanning every process is dearer: only while a subprocess runs
            try:
                pids += [p.pid for p in psutil.Process().children(recursive=True)]
            except psutil.Error:
                pass
        for pid in pids:
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for task in tasks:
                try:
                    with open(f"/proc/{pid}/task/{task}/wchan") as f:
                        if f.read().strip() == "wait_for_partner":
                            return True
                except OSError:
                    pass
        return False

    def unjam(self) -> None:
        with self.lock:
            dirs = list(self.dirs)
        for d in dirs:
            for fifo in fifos(d):
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError:  # ENXIO: nobody is reading it
                    continue
                os.close(fd)

    def watch(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                if self.blocked():
                    self.hangs += 1
                    self.unjam()
            except Exception:  # noqa: BLE001, S110 - never let the watchdog die
                pass


_WATCH: FifoWatch | None = None


def fifo_watch() -> FifoWatch:
    global _WATCH
    if _WATCH is None:
        _WATCH = FifoWatch()
    return _WATCH


def build_whole_root(tmp_path_factory, past: Path, name: str) -> Path:
    """build_root in a fresh tmp dir `name` (its FIFOs watched): every kind that lives in a shared
    root, beside the good runs; the module-scoped `whole_root` fixture of the test files."""
    root = tmp_path_factory.mktemp(name) / "runs"
    fifo_watch().watch_dir(root.parent)
    return build_root(root, past)
