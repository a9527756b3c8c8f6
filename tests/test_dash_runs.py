"""The dashboard's non-UI parts: following a run (app/follow.py), the run tracker, chart math,
the launch form's rules."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from app import follow, launch
from app.chart_math import Smoother, debiased_ema, downsample
from app.follow import RunTail
from gigagpt.config import ConfigError
from gigagpt.store.files import write_json
from gigagpt.store.lock import RunLock
from gigagpt.store.metrics import load_metrics
from gigagpt.store.tail import Cursor


def train_line(step, loss=None, **extra):
    rec = {"kind": "train", "step": step, "loss": 5.0 - step / 100 if loss is None else loss, "lr": 1e-3,
           "grad_norm": 1.0, "tokens": 512 * step, "tok_s": 1000.0, "mfu": None, "step_time": 0.1,
           "rss": 1 << 28, "mem_alloc": None, "mem_peak": None, "time": 1e9 + step}
    rec.update(extra)
    return json.dumps(rec) + "\n"


def event_line(event, step, **extra):
    return json.dumps({"kind": "event", "event": event, "step": step, "time": 1e9 + step, **extra}) + "\n"


def make_run(path, lines="", status="completed", **meta):
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.jsonl").write_text(lines)
    write_json(path / "meta.json", {"id": path.name, "status": status, "step": 0, "max_steps": 100,
                                           "created": time.time() - 60, "updated": time.time(),
                                    "heartbeat": time.time(), "host": socket.gethostname(),
                                    "pid": os.getpid(), **meta})
    return path


def steps(tail):
    return tail.series.train.col("step").tolist()


# ---------------------------------------------------------------------------- reading

def test_torn_last_line_waits_and_bad_lines_are_counted(tmp_path):
    run = make_run(tmp_path / "r", train_line(2) + "not json\n" + train_line(4)[:20])
    tail = RunTail(run)
    assert tail.poll()
    assert steps(tail) == [2] and tail.series.bad_lines == 1
    with open(run / "metrics.jsonl", "a") as f:
        f.write(train_line(4)[20:] + train_line(6))
    assert tail.poll()
    assert steps(tail) == [2, 4, 6]
    assert not tail.poll()  # nothing new, nothing changed


def test_truncated_or_replaced_file_is_read_again_from_the_start(tmp_path):
    run = make_run(tmp_path / "r", train_line(2) + train_line(4) + train_line(6))
    tail = RunTail(run)
    tail.poll()
    generation = tail.generation
    (run / "metrics.jsonl").write_text(train_line(8))  # shorter: truncated and rewritten
    tail.poll()
    assert steps(tail) == [8] and tail.generation > generation
    replacement = tmp_path / "new.jsonl"
    replacement.write_text(train_line(10) + train_line(12) + train_line(14))
    os.replace(replacement, run / "metrics.jsonl")  # longer, but another file (new inode)
    tail.poll()
    assert steps(tail) == [10, 12, 14]


def test_resume_rolls_back_like_the_core_reader(tmp_path):
    first = "".join(train_line(s) for s in (2, 4, 6, 8)) + json.dumps(
        {"kind": "eval", "step": 8, "val_loss": 3.0, "time": 1e9}) + "\n"
    run = make_run(tmp_path / "r", first)
    tail = RunTail(run)
    tail.poll()
    with open(run / "metrics.jsonl", "a") as f:  # the resume arrives in a later read
        f.write(event_line("resume", 4) + train_line(6, loss=1.0) + train_line(8, loss=0.5))
    tail.poll()
    expected = [r["step"] for r in load_metrics(run) if r["kind"] == "train"]
    assert steps(tail) == expected == [2, 4, 6, 8]
    assert tail.series.train.col("loss").tolist()[-2:] == [1.0, 0.5]
    assert len(tail.series.evals) == 0  # the eval at step 8 was rolled back too


def test_long_file_shows_its_end_first_then_the_whole_history(tmp_path, monkeypatch):
    monkeypatch.setattr(follow, "TAIL_FIRST_BYTES", 3000)
    monkeypatch.setattr(follow, "HISTORY_CHUNK_BYTES", 1000)
    lines = [train_line(s) for s in range(1, 301)]
    lines.insert(100, event_line("resume", 50))  # in the history part: steps 51..100 before it void
    lines.append(event_line("resume", 280))  # in the tail part: cuts the tail and nothing else
    lines += [train_line(s) for s in range(281, 291)]
    run = make_run(tmp_path / "r", "".join(lines))
    tail = RunTail(run)
    tail.poll()
    assert tail.history_end > 0 and 0 < len(tail.series.train) < 50
    assert tail.load_history()
    expected = [r["step"] for r in load_metrics(run) if r["kind"] == "train"]
    assert steps(tail) == expected
    assert tail.history_end == 0


def test_history_cut_by_a_resume_in_the_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(follow, "TAIL_FIRST_BYTES", 2000)
    lines = [train_line(s) for s in range(1, 101)] + [event_line("resume", 40)]
    lines += [train_line(s) for s in range(41, 46)]
    run = make_run(tmp_path / "r", "".join(lines))
    tail = RunTail(run)
    tail.poll()
    tail.load_history()
    assert steps(tail) == list(range(1, 46))


def test_log_is_tailed_and_reset_on_truncation(tmp_path):
    run = make_run(tmp_path / "r")
    (run / "train.log").write_text("one\ntwo\nthr")
    tail = RunTail(run)
    tail.poll()
    assert list(tail.log_lines) == ["one", "two"] and tail.log_seq == 2
    with open(run / "train.log", "a") as f:
        f.write("ee\n")
    tail.poll()
    assert list(tail.log_lines)[-1] == "three"
    (run / "train.log").write_text("new\n")
    tail.poll()
    assert list(tail.log_lines) == ["new"] and tail.log_generation == 1


def test_cursor_skips_a_line_longer_than_a_chunk(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x" * 50 + b"\nok\n")
    cursor = Cursor(path)
    data, _ = cursor.read(limit=10)
    assert cursor.offset == 10  # moved on instead of returning nothing forever


# ---------------------------------------------------------------------------- status

def test_status_crashed_failed_and_starting(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tail = RunTail(make_run(tmp_path / "crashed", status="running", pid=dead.pid))
    tail.poll()
    assert tail.status() == "crashed"
    assert "gone" in tail.failure("crashed")
    failed = RunTail(make_run(tmp_path / "failed", status="failed", failure="ValueError: boom"))
    failed.poll()
    assert failed.failure(failed.status()) == "ValueError: boom"
    (tmp_path / "new").mkdir()
    fresh = RunTail(tmp_path / "new")
    fresh.poll()
    assert fresh.status(process_alive=True) == "starting"
    assert fresh.status(process_alive=False) == "not started"


def test_damaged_meta_is_a_status_with_the_store_message(tmp_path):
    run = make_run(tmp_path / "r", train_line(2))
    (run / "meta.json").write_text('{"id": "r", "status": "running", "heartbeat": "soon"}')
    tail = RunTail(run)
    tail.poll()
    assert tail.status() == "damaged" and tail.status(process_alive=False) == "damaged"
    assert tail.failure("damaged") == "meta.json: heartbeat: must be a Unix time (a number), not str"
    assert steps(tail) == [2]  # the curves are still there
    (run / "meta.json").unlink()
    (run / "meta.json").mkdir()  # a directory where the file belongs: a message, not an exception
    assert tail.poll() and tail.status() == "damaged" and "not a regular file" in tail.failure("damaged")


LOCK_HOLDER = """
import sys, time
from gigagpt.store.lock import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_suspended_trainer_holding_its_lock_stays_running(tmp_path):
    """The lock decides running vs crashed on this host: SIGSTOP keeps it (a heartbeat an hour
    old does not matter); the holder's death releases it: crashed."""
    run = make_run(tmp_path / "r", train_line(2))
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        make_run(run, train_line(2), status="running", heartbeat=time.time() - 3600, pid=holder.pid)
        os.kill(holder.pid, signal.SIGSTOP)
        tail = RunTail(run)
        tail.poll()
        assert tail.status() == "running" and tail.failure("running") is None
    finally:
        holder.kill()
        holder.wait()
    assert tail.status() == "crashed"
    assert RunLock(run).acquire().release() is None  # free again


def test_log_lines_lose_control_characters(tmp_path):
    run = make_run(tmp_path / "r")
    (run / "train.log").write_bytes(b"\x1b[31mred\x1b[0m\tcol \xe2\x80\xaeevil\n\xff\xfe bytes\n")
    tail = RunTail(run)
    tail.poll()
    assert list(tail.log_lines) == ["[31mred[0m    col evil", "\ufffd\ufffd bytes"]


def test_eta_from_recent_rate(tmp_path):
    tail = RunTail(make_run(tmp_path / "r", "".join(train_line(s) for s in range(10, 60, 10)),
                           status="running", max_steps=100))
    tail.poll()
    assert tail.eta_seconds() == pytest.approx(50.0)  # 10 steps per 10 s, 50 steps to go


# ---------------------------------------------------------------------------- chart math

def reference_ema(x, w):
    acc, out = 0.0, []
    for t, v in enumerate(x, 1):
        acc = w * acc + (1 - w) * v
        out.append(acc / (1 - w ** t))
    return np.array(out)


@pytest.mark.parametrize("weight", [0.3, 0.6, 0.99, 0.999])
def test_debiased_ema_matches_the_definition(weight):
    x = np.random.default_rng(0).random(5000) * 3 + 2
    np.testing.assert_allclose(debiased_ema(x, weight), reference_ema(x, weight), rtol=1e-10)
    assert debiased_ema(x, weight)[0] == pytest.approx(x[0])  # no drag towards 0 at the start


def test_smoother_updates_incrementally_and_skips_nans():
    x = np.random.default_rng(1).random(3000)
    x[[5, 700]] = np.nan
    smoother = Smoother(0.9)
    smoother.update(x[:1000], generation=0)
    out = smoother.update(x, generation=0)
    ok = ~np.isnan(x)
    np.testing.assert_allclose(out[ok], reference_ema(x[ok], 0.9), rtol=1e-10)
    assert np.isnan(out[5])
    changed = x.copy()
    changed[:10] = 100.0
    assert smoother.update(changed, generation=1)[0] == 100.0  # a new generation recomputes


def test_downsample_bounds_points_and_keeps_spikes():
    x = np.arange(1_000_000, dtype=float)
    y = np.ones_like(x)
    y[123_456] = 50.0
    dx, dy = downsample(x, y, 100)
    assert len(dx) <= 200 and dy.max() == 50.0
    lx, ly = downsample(x, y, 100, keep_extremes=False)
    assert len(lx) == 100 and lx[-1] == x[-1]


# ---------------------------------------------------------------------------- launch form

def test_presets_listed_with_extra_dir_and_broken_file(tmp_path):
    (tmp_path / "mine.toml").write_text("[train]\nmax_steps = 5\nwarmup_steps = 1\n")
    (tmp_path / "broken.toml").write_text("[train]\nlr = 'fast'\n")
    presets = {p.name: p for p in launch.find_presets([tmp_path])}
    assert {"tiny", "nano", "124m", "111m", "1p3b", "13b", "70b", "175b", "mine", "broken"} <= set(presets)
    assert presets["mine"].cfg.train.max_steps == 5
    assert "train.lr" in presets["broken"].error
    big = launch.plan_row(presets["175b"].cfg, launch.Device("H200", "cuda", 141 << 30))
    assert big["params"] > 170e9 and not big["fits"]


def test_form_refuses_invalid_values_with_the_core_message(dataset):
    tiny = next(p for p in launch.find_presets() if p.name == "tiny")
    values = launch.form_values(tiny.cfg)
    cfg, overrides = launch.config_from_form(tiny, "walk", values)
    assert cfg.data.dataset == "walk" and "train.max_steps=40" in overrides
    with pytest.raises(ConfigError, match=r"train.lr = 'fast': must be a finite number"):
        launch.config_from_form(tiny, "walk", {**values, "train.lr": "fast"})
    with pytest.raises(ConfigError, match=r"train.batch_size = 0: must be in \[1, "):
        launch.config_from_form(tiny, "walk", {**values, "train.batch_size": "0"})
    with pytest.raises(ConfigError, match="prepare one"):
        launch.config_from_form(tiny, None, values)


def test_device_probe_reads_gpus_from_its_subprocess(monkeypatch):
    fake = 'import json; print(json.dumps({"cuda": [{"name": "NVIDIA H200", "memory": 150000000000}], "mps": False}))'
    monkeypatch.setattr(launch, "PROBE", fake)
    devices, problem = launch.probe_devices()
    assert problem is None
    assert devices[0].kind == "cuda" and "H200" in devices[0].label
    assert devices[0].env == {"CUDA_VISIBLE_DEVICES": "0"} and devices[-1].kind == "cpu"
    monkeypatch.setattr(launch, "PROBE", "raise SystemExit(3)")
    devices, problem = launch.probe_devices()
    assert [d.kind for d in devices] == ["cpu"] and "probe failed" in problem


def test_dashboard_never_imports_torch(tmp_path):
    code = f"""
import asyncio, sys
from pathlib import Path
from app.main import DashApp
import app.screens.live, app.screens.dialogs, app.widgets, app.launch
import app.screens.runs, app.screens.compare, app.screens.sample

async def go():
    app = DashApp(Path({str(tmp_path)!r}), probe=False, browse=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
asyncio.run(go())
assert "torch" not in sys.modules, "the dashboard imported torch"
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_a_damaged_runs_step_comes_from_its_metrics(tmp_path):
    """The live header's step: meta.json's, else (meta.json damaged) the last train line's, as the
    runs table says it; it read 'step 0/?' for a damaged run at step 8."""
    (tmp_path / "meta.json").write_text('{"status": ')
    (tmp_path / "metrics.jsonl").write_text("".join(
        json.dumps({"kind": "train", "step": s, "loss": 1.0, "time": s}) + "\n" for s in (4, 8)))
    tail = RunTail(tmp_path)
    tail.poll()
    assert tail.meta is None and tail.step() == 8
    write_json(tmp_path / "meta.json", {"status": "completed", "step": 6})
    tail.poll()
    assert tail.step() == 6


# ---------------------------------------------------------------------------- names cut to a width

def test_cut_names_never_look_alike():
    """app.cells.fit_all (compare legends, run tables): at most `width` characters, a name that fits
    is itself, equal names alike, and two different names never the same label, over many pairs
    and sets: timestamps a second apart, names that differ only in the middle, prefixes of each
    other, names that already look cut (`…`) or numbered (`~2`)."""
    import random

    from app.cells import fit, fit_all

    assert fit("tiny-20261129-093012", 16) == "tiny-20…9-093012"
    a, b = fit_all(["tiny-20261129-093012", "tiny-20261129-091544"], 18)
    assert a != b and a.endswith("093012") and b.endswith("091544")
    a, b = fit_all(["sweep-lr3e-4-bs8-seed1-20261129", "sweep-lr1e-3-bs8-seed1-20261129"], 18)
    assert a != b and "3e-4" in a and "1e-3" in b  # they differ in the middle: that part is shown

    rng = random.Random(16)
    stem = "tiny-20261129-0930"
    sets = [[stem + f"{s:02d}", stem + f"{s + 1:02d}"] for s in range(0, 59, 7)]
    sets += [[f"exp-{m}-{'x' * 30}-end" for m in ("a", "b")], ["a" * 40, "a" * 41, "a" * 39 + "b"],
             ["run…" + "9" * 20, fit("run-" + "8" * 20 + "9" * 20, 24), "run-" + "8" * 20 + "9" * 20],
             ["abc~1", "abc~2", "abc~1" + "z" * 30, "abc~2" + "z" * 30], ["same", "same", "other" * 9]]
    for _ in range(3000):  # random names over a small alphabet: many share long stretches
        n = rng.choice((2, 2, 3, 8))
        length = rng.randint(1, 50)
        base = "".join(rng.choice("ab-1…~") for _ in range(length))
        names = [base]
        for _ in range(n - 1):
            name = list(base)
            for _ in range(rng.randint(0, 3)):
                name.insert(rng.randint(0, len(name)), rng.choice("ab-1…~"))
            if name and rng.random() < 0.5:
                name[rng.randrange(len(name))] = rng.choice("ab-1…~")
            names.append("".join(name))
        sets.append(names)
    for names in sets:
        for width in (4, 6, 12, 18, 28, 40):
            labels = fit_all(names, width)
            for name, label in zip(names, labels):
                assert len(label) <= width, (names, width, label)
                if len(name) <= width:
                    assert label == name, (names, width)
            for i in range(len(names)):
                for j in range(len(names)):
                    assert (labels[i] == labels[j]) == (names[i] == names[j]), (names, width, labels)
