"""`gigagpt runs` on real run directories (tests/conftest.py: past_runs), as a user types it."""
import csv
import io
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import gigagpt, start_training
from damaged import four_damaged_runs

from gigagpt import listing
from gigagpt.store import curves, export, layout, metrics, scan, summary
from gigagpt.store.files import RunError, write_json
from gigagpt.store.lock import RunLock
from gigagpt.store.meta import read_meta

SAFETY_TIMEOUT = 150


def copy_runs(past_runs, tmp_path, *names):
    root = tmp_path / "runs"
    for name in names:
        shutil.copytree(past_runs / name, root / name)
    return root


def listed(root, *args):
    return json.loads(gigagpt("runs", "list", "--runs-root", root, "--json", *args).stdout)


def test_list_every_ending_and_filters(past_runs):
    rows = {r["id"]: r for r in listed(past_runs)}
    assert {k: r["status"] for k, r in rows.items()} == {
        "done": "completed", "stopped": "stopped", "failed": "failed", "crashed": "crashed"}
    done = rows["done"]
    assert done["step"] == done["max_steps"] == 6 and done["tokens"] == 6 * 256
    assert done["loss"] > 0 and done["best_val"] == done["val_loss"] > 0 and done["tok_s"] > 0
    assert done["checkpoints"] == 1 and done["last_checkpoint"] == 6 and done["problem"] is None
    assert rows["stopped"]["step"] == 4 and rows["stopped"]["max_steps"] == 20
    assert "non-finite loss" in rows["failed"]["failure"]
    assert rows["crashed"]["last_checkpoint"] >= 2
    assert [r["id"] for r in listed(past_runs, "--status", "completed,stopped")] in (["stopped", "done"], ["done", "stopped"])
    assert [r["id"] for r in listed(past_runs, "--filter", "cra")] == ["crashed"]
    by_loss = [r["id"] for r in listed(past_runs, "--sort", "step")]
    assert by_loss[-1] == "failed" or rows["failed"]["step"] is not None

    table = gigagpt("runs", "list", "--runs-root", past_runs).stdout
    header, *lines = table.splitlines()
    assert header.split()[:4] == ["RUN", "PRESET", "STATUS", "STEP"] and len(lines) == 4
    assert any("non-finite loss" in line for line in lines)

    bad = gigagpt("runs", "list", "--runs-root", past_runs, "--status", "sleeping", check=False)
    assert bad.returncode == 2 and "gigagpt: error: --status sleeping: must be one of" in bad.stderr


def test_summary_cache_rereads_only_what_changed(past_runs, tmp_path, monkeypatch):
    root = copy_runs(past_runs, tmp_path, "done", "stopped")
    first = summary.list_runs(root)
    assert (root / summary.SUMMARY_CACHE).is_file()
    calls = []
    monkeypatch.setattr(summary, "scan_metrics", lambda path, state: calls.append(path) or state)
    assert summary.list_runs(root) == first and calls == []  # warm: nothing re-read
    with open(root / "stopped" / "metrics.jsonl", "a") as f:  # a run that moves on
        f.write(json.dumps({"kind": "eval", "step": 4, "val_loss": 1.5, "time": time.time()}) + "\n")
    monkeypatch.undo()
    again = {r["id"]: r for r in summary.list_runs(root)}
    assert again["stopped"]["best_val"] == 1.5 and again["done"] == {r["id"]: r for r in first}["done"]


def test_scan_is_incremental_and_honours_resumes(tmp_path):
    path = tmp_path / "metrics.jsonl"

    def write(*records, torn=""):
        with open(path, "a") as f:
            for rec in records:
                f.write(json.dumps(rec, separators=(",", ":")) + "\n")
            f.write(torn)

    write({"kind": "train", "step": 2, "loss": 3.0, "tokens": 10, "tok_s": 5, "time": 1},
          {"kind": "eval", "step": 2, "val_loss": 2.0, "time": 1},
          {"kind": "train", "step": 4, "loss": 2.5, "tokens": 20, "tok_s": 5, "time": 2},
          {"kind": "eval", "step": 4, "val_loss": 1.0, "time": 2}, torn='{"kind":"tra')
    state = scan.scan_metrics(path, None)
    assert state["best_val"] == 1.0 and state["last"]["step"] == 4 and state["bad_lines"] == 0
    # resume from step 2 voids the step-4 eval (and its best val); the torn line completes as garbage
    with open(path, "a") as f:
        f.write('in"\n')
    write({"kind": "event", "event": "resume", "step": 2, "time": 3},
          {"kind": "eval", "step": 3, "val_loss": 1.8, "time": 4})
    state = scan.scan_metrics(path, state)
    assert state["best_val"] == 1.8 and state["val"] == 1.8 and state["last"]["step"] == 2
    assert state["bad_lines"] == 1


def test_show_rename_tag_and_running_refusals(past_runs, tmp_path):
    root = copy_runs(past_runs, tmp_path, "done")
    out = gigagpt("runs", "show", "done", "--runs-root", root).stdout
    assert "completed" in out and "6/6" in out and "last at step 6" in out
    gigagpt("runs", "rename", "done", "my baseline", "--runs-root", root)
    gigagpt("runs", "tag", "done", "baseline", "lr-3e-4", "--runs-root", root)
    gigagpt("runs", "tag", "done", "lr-3e-4", "--remove", "--runs-root", root)
    meta = read_meta(root / "done")
    assert meta.name == "my baseline" and meta.tags == ["baseline"] and meta.id == "done"
    (row,) = listed(root, "--filter", "baseline")
    assert row["name"] == "my baseline" and (root / "done").is_dir()
    bad = gigagpt("runs", "tag", "done", "two words", "--runs-root", root, check=False)
    assert bad.returncode == 2 and "tag 'two words'" in bad.stderr

    # A running run is refused: its trainer rewrites meta.json. Here this test holds the run's
    # lock, as a trainer does, and meta.json says running on this host.
    write_json(root / "done" / "meta.json", {**meta.raw, "status": "running", "pid": os.getpid(),
                                             "host": socket.gethostname(), "heartbeat": time.time()})
    with RunLock(root / "done").acquire():
        for args in (("rename", "done", "x"), ("tag", "done", "y"), ("rm", "done", "--yes")):
            proc = gigagpt("runs", *args, "--runs-root", root, check=False)
            assert proc.returncode == 2 and "running" in proc.stderr, proc.stderr
        assert listed(root)[0]["status"] == "running"
    assert listed(root)[0]["status"] == "crashed"  # the lock's holder is gone, whatever its pid
    assert (root / "done").is_dir() and read_meta(root / "done").name == "my baseline"
    missing = gigagpt("runs", "show", "nope", "--runs-root", root, check=False)
    assert missing.returncode == 2 and "run 'nope': not a run directory" in missing.stderr
    # a run name finds the one run whose id it starts (ids are <name>-<time>); two are ambiguous
    shutil.copytree(root / "done", root / "smoke-20261128-120000")
    assert "smoke-20261128-120000" in gigagpt("runs", "show", "smoke", "--runs-root", root).stdout
    shutil.copytree(root / "done", root / "smoke-20261128-130000")
    two = gigagpt("runs", "show", "smoke", "--runs-root", root, check=False)
    assert two.returncode == 2 and "2 runs match (smoke-20261128-120000, smoke-20261128-130000)" in two.stderr
    # only <name>-<time> ids count, and only runs: not another name, not any directory, not the root
    shutil.copytree(root / "done", root / "smoke-test-20261128-120000")
    (root / "data-backup").mkdir()
    for arg in ("data", ".", ".."):
        with pytest.raises(RunError, match="not a run directory"):
            layout.find_run(root, arg)
    assert layout.find_run(root, "smoke-test").name == "smoke-test-20261128-120000"
    # a damaged run (no meta.json) by its path, and an id typed with a trailing slash
    shutil.copytree(root / "done", root / "damaged")
    (root / "damaged" / "meta.json").unlink()
    (root / "damaged" / "config.toml").unlink(missing_ok=True)
    assert layout.find_run(root, str(root / "damaged")) == root / "damaged"
    assert layout.find_run(root, "damaged/") == root / "damaged"


def test_rm_asks_or_needs_yes(past_runs, tmp_path):
    root = copy_runs(past_runs, tmp_path, "done", "failed")
    proc = gigagpt("runs", "rm", "failed", "--runs-root", root, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and "--yes" in proc.stderr and (root / "failed").is_dir()
    gigagpt("runs", "rm", "failed", "--yes", "--runs-root", root)
    assert not (root / "failed").exists()
    assert [r["id"] for r in listed(root)] == ["done"]


def test_stop_a_real_run_then_resume_it(tmp_path, dataset):
    root = tmp_path / "runs"
    proc = start_training(dataset, root / "live", "--set", "train.max_steps=100000")
    try:
        deadline = time.monotonic() + SAFETY_TIMEOUT
        while not ((root / "live" / "metrics.jsonl").exists()
                   and '"kind":"train"' in (root / "live" / "metrics.jsonl").read_text()):
            assert time.monotonic() < deadline and proc.poll() is None, "the trainer did not start"
            time.sleep(0.1)
        (row,) = listed(root)
        assert row["status"] == "running"
        out = gigagpt("runs", "stop", "live", "--runs-root", root).stdout
        assert "stop requested" in out
        assert proc.wait(timeout=SAFETY_TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    (row,) = listed(root)
    assert row["status"] == "stopped" and row["last_checkpoint"] == row["step"]
    again = gigagpt("runs", "stop", "live", "--runs-root", root, check=False)
    assert again.returncode == 2 and "not running (stopped)" in again.stderr
    gigagpt("resume", "live", "--runs-root", root, "--set", f"train.max_steps={row['step'] + 2}")
    (row,) = listed(root)
    assert row["status"] == "completed" and row["step"] == row["max_steps"]


def test_export_csv_long_form(past_runs, tmp_path):
    out = tmp_path / "runs.csv"
    gigagpt("runs", "export", "done", "stopped", "--csv", out, "--runs-root", past_runs)
    rows = list(csv.DictReader(open(out)))
    assert list(rows[0]) == ["run", "step", "kind", "metric", "value"]
    losses = [(r["step"], float(r["value"])) for r in rows if r["run"] == "done" and r["metric"] == "loss"]
    expected = [(str(r["step"]), r["loss"]) for r in metrics.load_metrics(past_runs / "done") if r["kind"] == "train"]
    assert losses == expected and [s for s, _ in losses] == ["2", "4", "6"]
    assert any(r["kind"] == "eval" and r["metric"] == "val_loss" and r["step"] == "6" for r in rows)
    assert {r["run"] for r in rows} == {"done", "stopped"}
    stdout = gigagpt("runs", "export", "done", "--csv", "-", "--runs-root", past_runs).stdout
    assert stdout.startswith("run,step,kind,metric,value\n")


def read_events(directory):
    """Scalars in TensorBoard event files, read with the protobuf that tensorboardX ships
    (TFRecord framing: length, its crc, the Event, its crc)."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for path in directory.glob("events.out.tfevents.*"):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_export_tensorboard(past_runs, tmp_path):
    out = tmp_path / "tb"
    gigagpt("runs", "export", "done", "failed", "--tensorboard", out, "--runs-root", past_runs)
    scalars = read_events(out / "done")
    expected = [(r["step"], r["loss"]) for r in metrics.load_metrics(past_runs / "done") if r["kind"] == "train"]
    assert [s for s, _ in scalars["train/loss"]] == [s for s, _ in expected]
    assert np.allclose([v for _, v in scalars["train/loss"]], [v for _, v in expected], rtol=1e-6)
    assert [s for s, _ in scalars["eval/val_loss"]] == [6]
    assert (out / "failed").is_dir()


def test_compare_cli_and_curves_match_the_exact_reader(past_runs, tmp_path):
    out = gigagpt("runs", "compare", "done", "stopped", "--runs-root", past_runs).stdout
    assert "train.max_steps" in out and "20" in out
    # Curves: the fast path and the JSON path give what metrics.load_metrics gives, resumes applied.
    run = tmp_path / "resumed"
    run.mkdir()
    lines = [{"kind": "train", "step": s, "loss": 10 - s, "lr": 1e-3, "tokens": 8 * s, "tok_s": 1.0, "time": s}
             for s in range(1, 7)]
    lines.insert(3, {"kind": "eval", "step": 3, "val_loss": 7.5, "time": 3})
    lines += [{"kind": "event", "event": "resume", "step": 4, "time": 7}]
    lines += [{"kind": "train", "step": s, "loss": 20 - s, "lr": 1e-3, "tokens": 8 * s, "tok_s": 1.0, "time": 8 + s}
              for s in (5, 6)]
    text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines)
    for variant in (text, text.replace('"kind":"train",', '"kind": "train", ') + "junk\n"):
        (run / "metrics.jsonl").write_text(variant)
        got = curves.load_curves(run)
        exact = [r for r in metrics.load_metrics(run) if r["kind"] == "train"]
        assert got["train"]["step"].tolist() == [r["step"] for r in exact] == [1, 2, 3, 4, 5, 6]
        assert got["train"]["loss"].tolist() == [r["loss"] for r in exact] == [9, 8, 7, 6, 15, 14]
        assert got["eval"]["val_loss"].tolist() == [7.5]
    # torn, foreign and odd lines: whichever way a stretch is read, what the exact reader reads
    torn = text.replace('"loss":7,"lr"', '"loss":7,"l\n"lr"')  # step 3's line cut, as by a crash
    for variant in (torn, text.replace('"step":2,', '"step":-2,'), text.replace('"step":5,', f'"step":{10**13},'),
                    text.replace('"step":6,"loss":4', '"loss":4,"step":6'), '{"kind":"train","step":1}\n'):
        (run / "metrics.jsonl").write_text(variant)
        got = curves.load_curves(run, ("tokens",))
        exact = [r for r in metrics.load_metrics(run) if r["kind"] == "train"]
        assert got["train"]["step"].tolist() == [r["step"] for r in exact], variant
        assert got["train"]["loss"].tolist() == [r.get("loss", math.nan) for r in exact] or \
            all(math.isnan(v) for v in got["train"]["loss"]), variant


def test_damaged_runs_are_listed_with_their_problem(past_runs, tmp_path):
    root = copy_runs(past_runs, tmp_path, "done")
    four_damaged_runs(root, past_runs)
    rows = {r["id"]: r for r in listed(root)}
    assert rows["no-meta"]["status"] == "damaged" and "meta.json: missing" in rows["no-meta"]["problem"]
    assert rows["bad-meta"]["status"] == "damaged" and "not valid JSON" in rows["bad-meta"]["problem"]
    assert rows["garbage"]["status"] == "completed" and "3 lines are not JSON" in rows["garbage"]["problem"]
    assert rows["garbage"]["loss"] == rows["done"]["loss"]
    assert "not a torch checkpoint" in rows["bad-ckpt"]["problem"]
    assert rows["done"]["problem"] is None
    table = gigagpt("runs", "list", "--runs-root", root).stdout
    assert "not valid JSON" in table and "not a torch checkpoint" in table
    for run_id in rows:
        gigagpt("runs", "show", run_id, "--runs-root", root)
    gigagpt("runs", "export", *rows, "--csv", tmp_path / "all.csv", "--runs-root", root)


def test_store_and_runs_cli_never_import_torch():
    code = ("import sys; from gigagpt import listing, runs_cli, cli; cli.build_parser(); "
            "from gigagpt.store import actions, curves, export, files, layout, lock, meta, metrics, scan, summary, tail; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


@pytest.mark.parametrize("text,expected", [("", 0), ('{"kind":"train","step":1,"loss":2}\n', 0), ("{}\n", 1),
                                           ("x\n{}\n", 2), ("{\n}\n", 2), ('{"kind":"eval","step":1}\n\n[]\n', 1),
                                           ('{"kind":"train","step":"1"}\n{"kind": "train", "step": 1}\n', 1)])
def test_bad_lines_counts_what_the_reader_refuses(text, expected):
    assert scan.bad_lines(text.encode()) == expected


def test_sort_keeps_missing_values_last():
    rows = [{"loss": None, "id": "a"}, {"loss": 2.0, "id": "b"}, {"loss": 1.0, "id": "c"}]
    assert [r["id"] for r in listing.sort_rows(rows, "loss")] == ["c", "b", "a"]
    assert [r["id"] for r in listing.sort_rows(rows, "loss", reverse=True)] == ["b", "c", "a"]


def test_csv_export_to_a_buffer_skips_nulls(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "loss": 2.5, "mfu": None,
                                                   "time": 9.0}) + "\n")
    buf = io.StringIO()
    assert export.export_csv([run], buf) == 2
    assert buf.getvalue().splitlines()[1:] == ["r,1,train,loss,2.5", "r,1,train,time,9.0"]


# ---------------------------------------------------------------------------- several runs roots

def synthetic_run(root, run_id, loss=2.5, created=1_700_000_000):
    """A run directory written directly: meta.json and one train line (enough to list it)."""
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    meta = {"id": run_id, "name": run_id, "status": "completed", "preset": "tiny", "created": created,
            "updated": created + 10, "step": 3, "max_steps": 3, "device": "cpu"}
    (run_dir / "meta.json").write_text(json.dumps(meta))
    (run_dir / "config.toml").write_text(f"[train]\nlr = {loss / 1000}\n")
    (run_dir / "metrics.jsonl").write_text(json.dumps(
        {"kind": "train", "step": 3, "loss": loss, "tokens": 30, "tok_s": 5.0, "time": created + 10}) + "\n")
    return run_dir


@pytest.fixture
def two_roots(tmp_path, monkeypatch):
    """A runs root (main: same, a-only) and an extra one in the settings file (extra: same, b-only),
    plus an extra root that does not exist."""
    main, extra = tmp_path / "main", tmp_path / "extra"
    synthetic_run(main, "same", loss=2.0, created=1_700_000_000)
    synthetic_run(main, "a-only", loss=2.1, created=1_700_000_100)
    synthetic_run(extra, "same", loss=3.0, created=1_700_000_200)
    synthetic_run(extra, "b-only", loss=3.1, created=1_700_000_300)
    settings = tmp_path / "gigagpt.toml"
    settings.write_text('[runs]\nroots = ["extra", "gone"]\n')  # relative to the settings file
    monkeypatch.setenv("GIGAGPT_SETTINGS", str(settings))
    return main, extra


def test_settings_roots_are_listed_and_searched(two_roots, tmp_path):
    main, extra = two_roots
    proc = gigagpt("runs", "list", "--runs-root", main, "--json")
    rows = json.loads(proc.stdout)
    assert [(r["id"], r["root"]) for r in rows] == [
        ("b-only", str(extra)), ("same", str(extra)), ("a-only", str(main)), ("same", str(main))]
    assert proc.stderr.count("\n") == 1 and f"runs root {tmp_path / 'gone'}" in proc.stderr
    assert "not found; skipped" in proc.stderr
    header, *lines = gigagpt("runs", "list", "--runs-root", main).stdout.splitlines()
    assert header.split()[:3] == ["RUN", "ROOT", "PRESET"] and len(lines) == 4
    assert sum(str(extra) in line for line in lines) == 2

    # an id in one root is found there; one in both roots asks for the path
    assert f"path  {extra / 'b-only'}" in gigagpt("runs", "show", "b-only", "--runs-root", main).stdout
    both = gigagpt("runs", "show", "same", "--runs-root", main, check=False)
    assert both.returncode == 2 and "in 2 runs roots" in both.stderr and str(extra / "same") in both.stderr
    assert f"path  {extra / 'same'}" in gigagpt("runs", "show", extra / "same", "--runs-root", main).stdout
    gigagpt("runs", "rename", "b-only", "renamed", "--runs-root", main)
    gigagpt("runs", "tag", "b-only", "archived", "--runs-root", main)
    meta = json.loads((extra / "b-only" / "meta.json").read_text())
    assert meta["name"] == "renamed" and meta["tags"] == ["archived"]
    compared = gigagpt("runs", "compare", main / "same", extra / "same", "--runs-root", main).stdout
    assert "main/same" in compared and "extra/same" in compared and "train.lr" in compared
    gigagpt("runs", "export", main / "same", extra / "same", "a-only", "--csv", tmp_path / "x.csv", "--runs-root", main)
    with open(tmp_path / "x.csv") as f:
        assert {row["run"] for row in csv.DictReader(f)} == {"main/same", "extra/same", "a-only"}
    gigagpt("runs", "rm", "b-only", "--yes", "--runs-root", main)
    assert not (extra / "b-only").exists()


def test_bad_settings_roots_are_one_line_not_a_crash(tmp_path, monkeypatch):
    main = tmp_path / "main"
    synthetic_run(main, "only")
    settings = tmp_path / "gigagpt.toml"
    (tmp_path / "a-file").write_text("not a directory")
    settings.write_text(f'[runs]\nroots = ["{tmp_path / "a-file"}", "{main}"]\n')  # main twice: listed once
    monkeypatch.setenv("GIGAGPT_SETTINGS", str(settings))
    roots, problems = layout.runs_roots(main)
    assert roots == [main] and len(problems) == 1 and "a-file" in problems[0] and "not a directory" in problems[0]
    proc = gigagpt("runs", "list", "--runs-root", main)
    assert proc.stdout.split()[:2] == ["RUN", "PRESET"] and "only" in proc.stdout  # one root: no ROOT column
    assert proc.stderr.count("\n") == 1 and "not a directory" in proc.stderr

    settings.write_text("[runs]\nroots = 7\n")
    proc = gigagpt("runs", "list", "--runs-root", main)
    assert "only" in proc.stdout and "[runs] roots = 7: must be a list of paths" in proc.stderr
    settings.write_text("[runs\n")
    proc = gigagpt("runs", "list", "--runs-root", main)
    assert "only" in proc.stdout and "not valid TOML" in proc.stderr and proc.stderr.count("\n") == 1


def test_resume_and_sample_find_a_run_of_an_extra_root_by_id(tmp_path, monkeypatch, dataset):
    """`gigagpt resume ID` looks in the settings file's extra roots too (here: a completed run
    there, so resume answers with its own refusal, which proves it found the run)."""
    extra = tmp_path / "extra"
    run = extra / "far-away-run"
    run.mkdir(parents=True)
    (run / "config.toml").write_text(f"[train]\nmax_steps = 5\nwarmup_steps = 1\n[data]\ndataset = '{dataset}'\n")
    (run / "meta.json").write_text('{"status": "completed", "step": 5, "max_steps": 5}')
    settings = tmp_path / "gigagpt.toml"
    settings.write_text(f'[runs]\nroots = ["{extra}"]\n')
    monkeypatch.setenv("GIGAGPT_SETTINGS", str(settings))
    proc = gigagpt("resume", "far-away-run", "--runs-root", tmp_path / "first", check=False)
    assert proc.returncode == 2 and "completed at step 5" in proc.stderr, proc.stderr
    proc = gigagpt("sample", "far-away-run", "--runs-root", tmp_path / "first", check=False)
    assert proc.returncode == 2 and "no checkpoint" in proc.stderr, proc.stderr
