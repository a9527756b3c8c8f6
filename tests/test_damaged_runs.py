"""`gigagpt runs ...` and `gigagpt resume` on every kind of damaged run of tests/damaged.py, beside
good runs made by real trainers (tests/conftest.py: past_runs).

The commands run in this process through `gigagpt.cli.main` (an exception escaping it is a crash:
a user would see a traceback), with stdout strict UTF-8 like a terminal's, and a few through real
subprocesses. Each kind is a test id: test_list[meta_fifo] fails naming the kind and what was wrong.
A thread of this process (or of a child) that blocks opening a named pipe is noticed and freed
(damaged.FifoWatch), so a FIFO never hangs the suite; it fails the test that did it.

Resume never trains here: a damaged run must be refused before training. The refusal may come from
inside the trainer (whether a checkpoint loads is known only to torch), so `gigagpt.train.train` runs
for real; an optimizer step (torch.optim.AdamW.step) and os.exec* (torchrun, the Cerebras SDK) are
tripwires that fail the test instead of training or replacing this process.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, gigagpt
from damaged import (
    GOOD,
    KINDS,
    build_good_root,
    build_kind_root,
    build_whole_root,
    fifo_watch,
    tree,
)

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
STATUSES = {"running", "completed", "stopped", "failed", "crashed", "damaged"}
ALL = list(KINDS.values())
RUN_LEVEL = [k for k in ALL if not k.root_scoped]  # the kinds that are something in the root
NOT_RUNS = {k.entry for k in ALL if k.listed is False}


def ids(kinds):
    return [k.name for k in kinds]


# ---------------------------------------------------------------------------- running the CLI

class Tripwire(BaseException):
    """Raised where resume would start training (or exec another program): never caught by the product."""


@dataclass
class Ran:
    args: list
    code: int | None
    out: str
    err: str
    crash: str | None  # an exception that escaped main: what a user sees as a traceback
    fifo_hangs: int
    not_utf8: bool = False  # printed bytes that are not UTF-8 (a subprocess's raw output)

    def faults(self, codes=(0, 1, 2)) -> list[str]:
        found = []
        cmd = " ".join(map(str, self.args))[:160]
        if self.crash:
            found.append(f"`{cmd}` crashed: {self.crash}")
        elif self.code not in codes:
            found.append(f"`{cmd}` exited {self.code} (expected {'/'.join(map(str, codes))}): "
                         f"{(self.err.strip() or self.out.strip())[-300:]!r}")
        for stream in (self.out, self.err):
            if "Traceback (most recent call last)" in stream:
                found.append(f"`{cmd}` printed a traceback: {stream.strip().splitlines()[-1][:200]!r}")
        if self.not_utf8:
            found.append(f"`{cmd}` printed bytes that are not UTF-8 (a name from the disk, printed raw)")
        if self.fifo_hangs:
            found.append(f"`{cmd}` blocked opening a FIFO (open() of a named pipe waits for a writer for ever)")
        if self.code == 2 and not self.crash:
            lines = [x for x in self.err.splitlines() if x.strip()]
            if len(lines) != 1:
                found.append(f"`{cmd}` exited 2 with {len(lines)} lines on stderr, not one: {self.err[-400:]!r}")
        return found


def where(e: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "/tests/" not in f.filename]
    f = frames[-1] if frames else None
    at = f" at {os.path.relpath(f.filename, REPO)}:{f.lineno} in {f.name}" if f else ""
    return f"{type(e).__name__}: {str(e)[:160]}{at}"


def cli(*args) -> Ran:
    """`gigagpt ARGS` in this process, as a terminal would see it."""
    from gigagpt.cli import main

    watch = fifo_watch()
    out_b, err_b = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_b, encoding="utf-8", errors="strict", write_through=True)
    err = io.TextIOWrapper(err_b, encoding="utf-8", errors="backslashreplace", write_through=True)
    hangs, code, crash = watch.hangs, None, None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - a Tripwire or anything else that escaped main
            crash = where(e)
    out.flush()
    err.flush()
    return Ran(list(args), code, out_b.getvalue().decode("utf-8", "replace"),
               err_b.getvalue().decode("utf-8", "replace"), crash, watch.hangs - hangs)


def subprocess_cli(*args, cwd=REPO, timeout=120):
    """The real CLI in a subprocess (conftest.gigagpt), its FIFO opens watched too."""
    watch = fifo_watch()
    hangs = watch.hangs
    watch.children += 1
    try:
        proc = gigagpt(*args, check=False, timeout=timeout, cwd=cwd, encoding="utf-8", errors="surrogateescape")
    finally:
        watch.children -= 1
    raw = re.compile("[\udc80-\udcff]")
    return Ran(list(args), proc.returncode, proc.stdout, proc.stderr, None, watch.hangs - hangs,
               bool(raw.search(proc.stdout) or raw.search(proc.stderr)))


def no_constant(name):
    raise ValueError(f"{name} is not JSON")


def strict_json(text: str):
    """JSON as RFC 8259 has it: no NaN, Infinity or -Infinity (jq and browsers refuse them)."""
    return json.loads(text, parse_constant=no_constant)


def comparable(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("path", "root")}


def fail(faults: list[str]) -> None:
    if faults:
        pytest.fail("\n".join(dict.fromkeys(faults)), pytrace=False)


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", autouse=True)
def isolated_settings(tmp_path_factory):
    """No settings file's extra roots: each command sees only the root it is given."""
    settings = tmp_path_factory.mktemp("settings") / "gigagpt.toml"
    settings.write_text("")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIGAGPT_SETTINGS", str(settings))
        yield


@pytest.fixture(scope="module")
def clean(tmp_path_factory, past_runs):
    """The good runs' rows from a root holding only them, and done's CSV export."""
    root = build_good_root(tmp_path_factory.mktemp("clean") / "runs", past_runs)
    ran = cli("runs", "list", "--runs-root", root, "--json")
    fail(ran.faults((0,)))
    rows = {r["id"]: comparable(r) for r in strict_json(ran.out)}
    assert set(rows) == set(GOOD), rows
    out = root.parent / "done.csv"
    fail(cli("runs", "export", root / "done", "--csv", out, "--runs-root", root).faults((0,)))
    with open(out, newline="") as f:
        return {"rows": rows, "csv": [r[1:] for r in list(csv.reader(f))[1:]]}


@pytest.fixture(scope="module")
def kind_root(tmp_path_factory, past_runs):
    """kind -> a runs root holding that kind beside `done` (built once, when first needed)."""
    base = tmp_path_factory.mktemp("kinds")
    fifo_watch().watch_dir(base)
    made = {}

    def get(kind):
        if kind.skip:
            pytest.skip(kind.skip)
        if kind.name not in made:
            made[kind.name] = build_kind_root(base / kind.name / "runs", past_runs, kind)
        return made[kind.name]
    return get


@pytest.fixture(scope="module")
def whole_root(tmp_path_factory, past_runs):
    """Every kind that lives in a shared root, beside the four good runs."""
    return build_whole_root(tmp_path_factory, past_runs, "all")


@pytest.fixture(scope="module")
def no_training():
    """Tripwires where resume would take an optimizer step or exec torchrun / the Cerebras SDK;
    the trainer's SIGINT/SIGTERM handlers (it installs them in this process) are put back."""
    import signal

    import torch

    def tripwire(what):
        def trip(*args, **kwargs):
            raise Tripwire(f"resume went on to {what} (a damaged run must be refused before training)")
        return trip

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.AdamW, "step", tripwire("train (an optimizer step)"))
        for name in ("execv", "execve", "execvp", "execvpe"):
            mp.setattr(os, name, tripwire(f"os.{name}"))
        yield lambda: [signal.signal(sig, h) for sig, h in handlers.items()]
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


# ---------------------------------------------------------------------------- what a row must say

def check_row(kind, row: dict | None, clean_rows: dict, how: str) -> list[str]:
    """What a user must see of `kind` in one listing row (or show's JSON)."""
    found = []
    if row is None:
        return [f"{how}: no row for {kind.entry!r}"] if kind.listed else []
    if kind.listed is False:
        return [f"{how}: {kind.entry!r} is not a run (docs/run-format.md, 'Recognising a run') but has a row"]
    status, problem = row.get("status"), row.get("problem")
    if status not in STATUSES:
        found.append(f"{how}: status {status!r} is not one of {sorted(STATUSES)}")
    if kind.status and status not in kind.status:
        found.append(f"{how}: status {status!r}, expected {' or '.join(kind.status)} (problem: {problem!r})")
    if kind.problem:
        if not isinstance(problem, str) or not problem.strip():
            found.append(f"{how}: no problem line (expected one naming {', '.join(kind.problem)})")
        else:
            missing = [w for w in kind.problem if w.lower() not in problem.lower()]
            if missing:
                found.append(f"{how}: problem {problem[:200]!r} does not name {', '.join(missing)}")
    if kind.no_problem and problem:
        found.append(f"{how}: not damaged, yet the problem {problem[:200]!r}")
    if isinstance(problem, str) and ("\n" in problem or "\r" in problem or CONTROL.search(problem)):
        found.append(f"{how}: the problem is not one clean line: {problem[:200]!r}")
    for key in ("name", "failure", "problem"):
        if isinstance(row.get(key), str) and CONTROL.search(row[key]):
            found.append(f"{how}: {key} keeps control characters: {row[key][:80]!r}")
    if any(isinstance(t, str) and CONTROL.search(t) for t in row.get("tags") or []):
        found.append(f"{how}: tags keep control characters: {row['tags']!r}")
    source = clean_rows.get(kind.source or "done", {})
    for key in kind.same_as:
        if row.get(key) != source.get(key):
            found.append(f"{how}: {key} = {row.get(key)!r}, but {source.get(key)!r} in the run it was copied "
                         f"from (the damage must not change it)")
    for key, value in kind.expect.items():
        if row.get(key) != value:
            found.append(f"{how}: {key} = {row.get(key)!r}, expected {value!r}")
    return found


def listing(root) -> tuple[list[dict] | None, list[str]]:
    """`runs list --json` and `runs list` on a root: (rows, faults)."""
    ran = cli("runs", "list", "--runs-root", root, "--json")
    faults = ran.faults((0,))
    rows = None
    if ran.code == 0 and not ran.crash:
        try:
            rows = strict_json(ran.out)
        except ValueError as e:
            faults.append(f"runs list --json: not valid JSON ({e})")
    table = cli("runs", "list", "--runs-root", root)
    faults += table.faults((0,))
    if table.code == 0 and rows is not None:
        lines = table.out.splitlines()
        if len(lines) != len(rows) + 1:
            faults.append(f"runs list: {len(lines)} lines for {len(rows)} runs and a header "
                          "(a name or a problem broke a line)")
        bad = CONTROL.search(table.out.replace("\n", ""))
        if bad:
            faults.append(f"runs list: the table holds the control character {bad.group()!r}")
    return rows, faults


def row_of(rows, kind):
    return next((r for r in rows or [] if r.get("id") in kind.ids), None)


# ---------------------------------------------------------------------------- runs list, kind by kind

@pytest.mark.parametrize("kind", ALL, ids=ids(ALL))
def test_list(kind, kind_root, clean):
    """One kind beside `done`: a row that says what is wrong; done's row as in a clean root."""
    root = kind_root(kind)
    rows, faults = listing(root)
    if rows is not None:
        by_id = {r["id"]: comparable(r) for r in rows}
        if kind.root_scoped:  # a damaged cache reads as no cache, listed once and again
            again, faults2 = listing(root)
            faults += faults2
            for n, got in enumerate((rows, again or [])):
                got = {r["id"]: comparable(r) for r in got}
                for run_id in sorted(set(got) | set(clean["rows"])):
                    if got.get(run_id) != clean["rows"].get(run_id):
                        faults.append(f"listing {n + 1}: row {run_id!r} differs from a clean root's: "
                                      f"{diff(got.get(run_id), clean['rows'].get(run_id))}")
        else:
            if by_id.get("done") != clean["rows"]["done"]:
                faults.append(f"done's row differs from a clean root's: {diff(by_id.get('done'), clean['rows']['done'])}")
            faults += check_row(kind, row_of(rows, kind), clean["rows"], "runs list --json")
            extra = set(by_id) - {"done", *kind.ids, *kind.also}
            if extra:
                faults.append(f"rows for what is not a run: {sorted(extra)}")
    fail(faults)


def diff(got, want) -> str:
    if not isinstance(got, dict) or not isinstance(want, dict):
        return f"{got!r} vs {want!r}"
    keys = [k for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
    return ", ".join(f"{k}: {got.get(k)!r} (clean: {want.get(k)!r})" for k in keys)[:600]


# ---------------------------------------------------------------------------- every command, kind by kind

@pytest.mark.parametrize("kind", RUN_LEVEL, ids=ids(RUN_LEVEL))
def test_commands(kind, kind_root, clean, past_runs, tmp_path, no_training):
    """show, show --json, compare, export --csv, export --tensorboard, resume and rm on one kind
    (beside `done`): no traceback, exit 0/1/2 with one line on 2, and what each must do."""
    if kind.skip:
        pytest.skip(kind.skip)
    root = kind_root(kind)
    path = root / kind.entry
    faults = show(kind, path, clean) + compare(kind, root, path) + export_csv(kind, root, path, clean, tmp_path)
    faults += export_tensorboard(root, path, tmp_path) + resume(root, path, no_training)
    faults += rm(kind, past_runs, tmp_path / "rm")
    fail(faults)


def show(kind, path, clean) -> list[str]:
    """A listed run shows (exit 0) with its problem; anything else is one line, exit 2."""
    text, js = cli("runs", "show", path), cli("runs", "show", "--json", path)
    codes = (0,) if kind.listed else (0, 1, 2)
    faults = text.faults(codes) + js.faults(codes)
    if text.code == 0 and not text.crash:
        bad = CONTROL.search(text.out.replace("\n", ""))
        if bad:
            faults.append(f"runs show: prints the control character {bad.group()!r}")
        if kind.problem:
            lines = [x for x in text.out.splitlines() if x.strip().startswith("problem")]
            if not lines:
                faults.append("runs show: no 'problem' line")
            elif any(w.lower() not in lines[0].lower() for w in kind.problem):
                faults.append(f"runs show: {lines[0].strip()[:200]!r} does not name {', '.join(kind.problem)}")
    if js.code == 0 and not js.crash:
        try:
            row = strict_json(js.out)
        except ValueError as e:
            faults.append(f"runs show --json: not valid JSON ({e})")
        else:
            if kind.listed:
                faults += check_row(kind, row, clean["rows"], "runs show --json")
    return faults


def compare(kind, root, path) -> list[str]:
    ran = cli("runs", "compare", root / "done", path, "--runs-root", root)
    faults = ran.faults()
    if ran.code == 0 and not ran.crash:
        if "done" not in ran.out:
            faults.append("runs compare: the good run is not in the output")
        bad = CONTROL.search(ran.out.replace("\n", ""))
        if bad:
            faults.append(f"runs compare: prints the control character {bad.group()!r}")
    return faults


def export_csv(kind, root, path, clean, tmp_path) -> list[str]:
    """A CSV of what is valid: integer steps, finite numbers; where the damage leaves the train and
    eval lines alone, the same rows as the run it was copied from."""
    out = tmp_path / "out.csv"
    ran = cli("runs", "export", path, "--csv", out, "--runs-root", root)
    faults = ran.faults()
    if ran.code == 0 and not ran.crash:
        try:
            with open(out, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            rows = []
            faults.append(f"export --csv exited 0 without a readable CSV ({e})")
        if rows and rows[0] != ["run", "step", "kind", "metric", "value"]:
            faults.append(f"export --csv: header {rows[0]}")
        for r in rows[1:]:
            if len(r) != 5 or not r[1].isdigit() or r[2] not in ("train", "eval") or not is_number(r[4]):
                faults.append(f"export --csv: the row {r} is not run, integer step, train/eval, metric, number")
                break
        if kind.same_csv and [r[1:] for r in rows[1:]] != clean["csv"]:
            faults.append(f"export --csv: {len(rows) - 1} rows, not the {len(clean['csv'])} rows of the run it was "
                          "copied from")
    return faults


def is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def export_tensorboard(root, path, tmp_path) -> list[str]:
    out = tmp_path / "tb"
    ran = cli("runs", "export", path, "--tensorboard", out, "--runs-root", root)
    faults = ran.faults()
    if ran.code == 0 and not ran.crash and not any("tfevents" in p.name for p in out.rglob("*")):
        faults.append("export --tensorboard exited 0 and wrote no event file")
    return faults


def run_files(path: Path) -> dict:
    """What resume must not change: everything but the lock file and stale temp names."""
    if not os.path.isdir(path) or os.path.islink(path):
        return {}
    return {k: v for k, v in tree(path).items() if not os.path.basename(k).startswith(".")}


def resume(root, path, restore_signals) -> list[str]:
    """Refused with one line (exit 2), nothing written: damaged, completed, or not a run at all."""
    before = run_files(path)
    ran = cli("resume", path, "--nproc", "1", "--device", "cpu", "--runs-root", root)
    restore_signals()
    faults = ran.faults((2,))
    if run_files(path) != before:
        faults.append("resume changed the run's files")
    return faults


def rm(kind, past_runs, base: Path) -> list[str]:
    """On a fresh copy: a run directory in the root goes; a symlink is refused (its target is not
    the link's to delete); nothing else changes, inside the root or out."""
    root = build_kind_root(base / "runs", past_runs, kind)
    fifo_watch().watch_dir(base)
    entry = root / kind.entry
    was_link = os.path.islink(entry)
    keep = {name: tree(base / name) for name in os.listdir(base) if name != "runs"}
    keep.update({f"runs/{name}": tree(root / name) for name in ("done", *kind.also)})
    ran = cli("runs", "rm", entry, "--yes", "--runs-root", root)
    faults = ran.faults()
    if not root.is_dir():
        faults.append("runs rm: the runs root is gone")
    for name, before in keep.items():
        if tree(base / name) != before:
            faults.append(f"runs rm: {name} changed (only {kind.entry!r} was to be deleted)")
    if was_link and ran.code != 2:
        faults.append(f"runs rm of a symlink exited {ran.code}: it must be refused (docs/run-format.md)")
    elif kind.listed and not was_link and ran.code != 0:
        faults.append(f"runs rm of a (damaged) run directory in the root exited {ran.code}: "
                      f"{ran.err.strip()[-200:]!r}")
    if ran.code == 0 and os.path.lexists(entry):
        faults.append("runs rm exited 0 and the run is still there")
    if ran.code == 2 and not os.path.lexists(entry):
        faults.append("runs rm refused, and the entry is gone")
    return faults


def looks_like_a_run(path: Path, *files, meta_id=None) -> Path:
    path.mkdir(parents=True)
    for name in files:
        (path / name).write_text('{"kind": "train", "step": 1, "loss": 2.0}\n' if name == "metrics.jsonl"
                                 else "[train]\nmax_steps = 1\n" if name == "config.toml" else "hello\n")
    if meta_id:
        (path / "meta.json").write_text(json.dumps({"id": meta_id, "status": "completed"}))
    return path


def test_rm_refuses_what_is_not_a_run_of_a_root(past_runs, tmp_path):
    """docs/run-format.md, 'Deleting a run': outside every root only a directory whose meta.json
    names it; never `.`, `..`, a runs root or what holds one, the current directory."""
    root = build_good_root(tmp_path / "runs", past_runs)
    (root / "config.toml").write_text("[train]\n")  # a runs root with run files of its own
    (root / "train.log").write_text("stray\n")
    (tmp_path / "train.log").write_text("the root's parent looks like a run too\n")
    others = tmp_path / "elsewhere"
    cases = [looks_like_a_run(others / name, *files, meta_id=meta_id) for name, files, meta_id in (
        ("all-three", ("config.toml", "train.log", "metrics.jsonl"), None),
        ("config-only", ("config.toml",), None), ("log-only", ("train.log",), None),
        ("metrics-only", ("metrics.jsonl",), None), ("names-another", ("train.log",), "someone-else"))]
    cases += [root, tmp_path, Path(f"{root}/."), Path(f"{root}/done/.."), Path(f"{root}/done/../.")]
    before = {p: tree(tmp_path) for p in [tmp_path]}
    faults = []
    for path in cases:
        ran = cli("runs", "rm", path, "--yes", "--runs-root", root)
        faults += ran.faults((2,))
        if tree(tmp_path) != before[tmp_path]:
            faults.append(f"`runs rm {path} --yes` deleted something")
            break
    fail(faults)


@pytest.mark.parametrize("where,arg", [("run", "."), ("run", "./"), ("run", ".."), ("root", "."), ("root", "..")])
def test_rm_dot_refused(where, arg, past_runs, tmp_path):
    """`runs rm . --yes` typed in a run directory or in the runs root (a real subprocess, its cwd
    there) is refused and deletes nothing."""
    root = build_good_root(tmp_path / "runs", past_runs)
    before = tree(tmp_path)
    cwd = root / "done" if where == "run" else root
    ran = subprocess_cli("runs", "rm", arg, "--yes", "--runs-root", root, cwd=cwd)
    faults = ran.faults((2,))
    if tree(tmp_path) != before:
        faults.append(f"`runs rm {arg}` in the {where} directory deleted something")
    fail(faults)


# ---------------------------------------------------------------------------- one root, every kind

def test_whole_root(whole_root, clean):
    """Every kind in one root with the four good runs: one row per run (damaged ones included, none
    for what is not a run), each damaged row with its problem, the good rows as in a clean root."""
    rows, faults = listing(whole_root)
    if rows is not None:
        by_id = {r["id"]: r for r in rows}
        if len(by_id) != len(rows):
            faults.append(f"{len(rows) - len(by_id)} ids listed twice")
        for run_id in GOOD:
            if comparable(by_id.get(run_id) or {}) != clean["rows"][run_id]:
                faults.append(f"good run {run_id}: {diff(comparable(by_id.get(run_id) or {}), clean['rows'][run_id])}")
        for kind in RUN_LEVEL:
            if not kind.skip:
                faults += [f"{kind.name}: {f}" for f in check_row(kind, row_of(rows, kind), clean["rows"], "whole root")]
        known = set(GOOD) | {i for k in RUN_LEVEL for i in k.ids} | {a for k in RUN_LEVEL for a in k.also}
        if set(by_id) - known:
            faults.append(f"rows for unknown ids: {sorted(set(by_id) - known)}")
    fail(faults)


def test_whole_root_subprocess(whole_root, clean):
    """The real CLI, as a user runs it: `runs list --json`, `runs list` and `runs show` of a few."""
    js = subprocess_cli("runs", "list", "--runs-root", whole_root, "--json")
    table = subprocess_cli("runs", "list", "--runs-root", whole_root)
    faults = js.faults((0,)) + table.faults((0,))
    if js.code == 0:
        try:
            rows = strict_json(js.out)
        except ValueError as e:
            faults.append(f"runs list --json: not valid JSON ({e})")
        else:
            ids = {r["id"] for r in rows}
            missing = [k.entry for k in RUN_LEVEL if k.listed and not k.skip and not k.ids & ids]
            if missing:
                faults.append(f"runs list --json: no rows for {sorted(missing)[:10]}")
            if table.code == 0 and len(table.out.splitlines()) != len(rows) + 1:
                faults.append(f"runs list: {len(table.out.splitlines())} lines for {len(rows)} runs and a header")
    for name in ("meta_created_str", "meta_is_directory", "metrics_step_string", "checkpoint_not_a_zip",
                 "root_name_control_chars"):
        ran = subprocess_cli("runs", "show", whole_root / KINDS[name].entry)
        faults += [f"{name}: {f}" for f in ran.faults((0,))]
    fail(faults)


@pytest.mark.parametrize("name", ["checkpoint_not_a_zip", "meta_binary"])
def test_resume_subprocess(name, whole_root):
    """A real `gigagpt resume` of a damaged run: one line, exit 2, nothing trained."""
    path = whole_root / KINDS[name].entry
    before = run_files(path)
    ran = subprocess_cli("resume", path, "--runs-root", whole_root, "--device", "cpu", timeout=60)
    faults = ran.faults((2,))
    if run_files(path) != before:
        faults.append("resume changed the run's files")
    fail(faults)


def test_past_runs_untouched(past_runs):
    """The damaged copies share checkpoint files with the real runs (hard links): none was written
    through. (Runs last in this module.)"""
    for name in GOOD:
        for ckpt in (past_runs / name / "checkpoints").glob("*.pt"):
            with open(ckpt, "rb") as f:
                assert f.read(2) == b"PK", ckpt
    # a listing of past_runs (test_runs) leaves its summary cache there: names with '.' are no runs
    assert sorted(p.name for p in past_runs.iterdir() if not p.name.startswith(".")) == sorted(GOOD)
