"""Queues and sweeps (issue 16): queued runs are run directories, the runner starts them in order
with the real CLI and real trainers, cancels and retries hold under the runs' locks."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, TINY, gigagpt

from gigagpt.store.meta import read_meta
from gigagpt.store.metrics import load_metrics
from gigagpt.store.queue import queued_runs, runner_state
from gigagpt.store.summary import run_status

FAST = ("--set", "train.max_steps=3", "--set", "train.log_interval=1", "--set", "train.eval_interval=3",
        "--set", "train.eval_steps=1")


def sets(dataset, *extra):
    return ["--set", f"data.dataset={dataset}", *TINY, *FAST, *extra]


def run_foreground(root, *extra, timeout=300):
    return gigagpt("queue", "run", "--foreground", "--runs-root", root, *extra, timeout=timeout)


def wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def kill_under_a_runner(root, run_dir, when) -> str:
    """A foreground runner with --retries 1; SIGKILL its trainer once a metrics line matches
    `when`; the runner's output once it has finished."""
    runner = subprocess.Popen([sys.executable, "-m", "gigagpt", "queue", "run", "--foreground", "--retries", "1",
                               "--runs-root", str(root)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        wait_for(lambda: (run_dir / "metrics.jsonl").exists() and any(map(when, load_metrics(run_dir))), "the kill point")
        os.killpg(read_meta(run_dir).pid, signal.SIGKILL)
        return runner.communicate(timeout=240)[0]
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_a_sweep_runs_one_after_another_in_order(dataset, tmp_path):
    root = tmp_path / "runs"
    out = gigagpt("sweep", "tiny", "--grid", "train.lr=1e-3,3e-4,1e-4", *sets(dataset), "--runs-root", root).stdout
    assert "3 runs (3 train.lr)" in out
    queued = queued_runs(root)
    assert [m.sweep["values"]["train.lr"] for _, m in queued] == [1e-3, 3e-4, 1e-4]
    sweep_id = queued[0][1].sweep["id"]
    assert all(m.tags == [f"sweep:{sweep_id}"] and m.status == "queued" for _, m in queued)
    listed = json.loads(gigagpt("queue", "list", "--json", "--runs-root", root).stdout)
    assert [q["position"] for q in listed["queued"]] == [1, 2, 3] and listed["runner"] is None
    run_foreground(root)
    spans = []
    for run_dir, _ in queued:
        assert read_meta(run_dir).status == "completed"
        lines = load_metrics(run_dir)
        spans.append((lines[0]["time"], lines[-1]["time"]))
        cfg = (run_dir / "config.toml").read_text()
        assert f"lr = {read_meta(run_dir).sweep['values']['train.lr']}" in cfg
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(2)), spans  # strictly one after another
    assert queued_runs(root) == []


def test_bad_sweeps_queue_nothing(dataset, tmp_path):
    root = tmp_path / "runs"
    for grid, needle in [("train.lr=1e-3,nan", "train.lr = nan: must be a finite number"),
                         ("train.max_steps=3,2.5", "must be an integer"),
                         ("train.warmup_steps=1,9", "train.warmup_steps = 9"),
                         ("train.lr=", "expected section.key=value"), ("nokey=1,2", "expected section.key=value"),
                         ("train.nope=1,2", "unknown key train.nope")]:
        proc = gigagpt("sweep", "tiny", "--grid", grid, *sets(dataset), "--runs-root", root, check=False)
        assert proc.returncode == 2 and needle in proc.stderr, (grid, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    seeds = [x for i in range(2) for x in ("--grid", f"train.seed={','.join(map(str, range(i * 10, i * 10 + 10)))}")]
    proc = gigagpt("sweep", "tiny", *seeds, *sets(dataset), "--runs-root", root, check=False)
    assert proc.returncode == 2 and "given twice" in proc.stderr
    values = ",".join(map(str, range(1, 12)))
    big = [x for key in ("seed", "eval_steps", "log_interval") for x in ("--grid", f"train.{key}={values}")]
    proc = gigagpt("sweep", "tiny", *big, *sets(dataset), "--runs-root", root, check=False)
    assert proc.returncode == 2 and "more than 1000 combinations" in proc.stderr
    assert not root.exists()


def test_cancel_move_and_clear(dataset, tmp_path):
    root = tmp_path / "runs"
    for name in ("a", "b", "c"):
        gigagpt("queue", "add", "tiny", *sets(dataset), "--name", name, "--runs-root", root)
    ids = [p.name for p, _ in queued_runs(root)]
    gigagpt("queue", "move", ids[2], "1", "--runs-root", root)
    assert [p.name for p, _ in queued_runs(root)] == [ids[2], ids[0], ids[1]]
    gigagpt("queue", "move", ids[2], "99", "--runs-root", root)
    assert [p.name for p, _ in queued_runs(root)] == [ids[0], ids[1], ids[2]]
    gigagpt("queue", "cancel", ids[1], "--runs-root", root)
    assert run_status(root / ids[1]) == "cancelled"
    proc = gigagpt("queue", "cancel", ids[1], "--runs-root", root, check=False)
    assert proc.returncode == 2 and "cancelled, not queued" in proc.stderr
    proc = gigagpt("resume", root / ids[1], check=False)  # what the runner would run: refused, nothing written
    assert proc.returncode == 2 and "cancelled before it started" in proc.stderr
    assert sorted(os.listdir(root / ids[1])) == [".lock", "config.toml", "meta.json"]
    header, *lines = gigagpt("runs", "list", "--runs-root", root).stdout.splitlines()  # not started: no time
    at = [header.index(name) for name in ("STARTED", "DURATION")]
    assert len(lines) == 3 and all(line[i] == "–" for line in lines for i in at), lines
    assert "started  not started" in gigagpt("runs", "show", ids[1], "--runs-root", root).stdout
    run_foreground(root)
    assert [run_status(root / i) for i in ids] == ["completed", "cancelled", "completed"]
    gigagpt("queue", "add", "tiny", *sets(dataset), "--runs-root", root)
    assert "cancelled 1 queued run(s)" in gigagpt("queue", "clear", "--runs-root", root).stdout
    assert queued_runs(root) == []


def test_a_run_that_cannot_start_fails_with_the_reason(dataset, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    root = tmp_path / "runs"
    gigagpt("queue", "add", "tiny", *sets(data), "--runs-root", root)
    (run_dir, _), = queued_runs(root)
    shutil.rmtree(data)
    run_foreground(root)
    meta = read_meta(run_dir)
    assert meta.status == "failed" and "did not start (exit 2)" in meta.failure and "no prepared dataset" in meta.failure


def test_one_runner_per_root_detached_and_it_outlives_its_shell(dataset, tmp_path):
    root = tmp_path / "runs"
    gigagpt("queue", "add", "tiny", *sets(dataset, "--set", "train.max_steps=40"), "--runs-root", root)
    out = gigagpt("queue", "run", "--runs-root", root).stdout  # returns at once: the runner is detached
    assert "queue runner started" in out
    wait_for(lambda: runner_state(root), "the runner's state")
    pid = runner_state(root)["pid"]
    assert os.getsid(pid) == pid  # its own session: closing the shell or the dashboard does not end it
    proc = gigagpt("queue", "run", "--runs-root", root, check=False)
    assert proc.returncode == 2 and f"a queue runner is already running (pid {pid})" in proc.stderr
    proc = gigagpt("queue", "run", "--foreground", "--runs-root", root, check=False)
    assert proc.returncode == 2 and "already running" in proc.stderr
    wait_for(lambda: runner_state(root) is None, "the runner to finish", timeout=240)
    assert [read_meta(p).status for p in root.iterdir() if not p.name.startswith(".")] == ["completed"]


def test_a_killed_run_is_retried_and_its_losses_continue_exactly(dataset, tmp_path):
    extra = ("--set", "train.max_steps=10", "--set", "train.checkpoint_interval=2", "--set", "train.keep_checkpoints=5")
    ref = tmp_path / "ref"
    gigagpt("train", "tiny", *sets(dataset, *extra), "--run-dir", ref)
    root = tmp_path / "runs"
    gigagpt("queue", "add", "tiny", *sets(dataset, *extra), "--runs-root", root)
    (run_dir, _), = queued_runs(root)
    out = kill_under_a_runner(root, run_dir, lambda r: r["kind"] == "checkpoint" and r["step"] >= 4)
    assert "crashed (exit -9)" in out and "(retry 1 of 1)" in out, out
    assert read_meta(run_dir).status == "completed"
    lines = load_metrics(run_dir)
    assert [r for r in lines if r.get("event") == "retry"][0]["attempt"] == 1
    train = {r["step"]: r["loss"] for r in lines if r["kind"] == "train"}
    want = {r["step"]: r["loss"] for r in load_metrics(ref) if r["kind"] == "train"}
    assert train == want and sorted(train) == list(range(1, 11))


@pytest.mark.parametrize("grid", ["--grid", ""])
def test_queue_needs_its_arguments(tmp_path, grid):
    proc = gigagpt("sweep", "tiny", *([grid] if grid else []), "--runs-root", tmp_path / "r", check=False)
    assert proc.returncode == 2 and not (tmp_path / "r").exists()


def test_queue_refusals_are_one_line(dataset, tmp_path):
    root = tmp_path / "runs"
    for args, needle in [
        (["sweep", "tiny", "--grid", "cerebras.mount_dirs=/a,/b"], "a list key"),
        (["queue", "run", "--devices", "abc,0"], "must be distinct GPU indices"),
        (["queue", "run", "--devices", "0,0"], "must be distinct GPU indices"),
        (["queue", "run", "--slots", "0"], "--slots 0: must be >= 1"),
        (["queue", "run", "--retries", "-1"], "--retries -1"),
    ]:
        proc = gigagpt(*args, *(sets(dataset) if args[0] == "sweep" else []), "--runs-root", root, check=False)
        assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
    afile = tmp_path / "afile"
    afile.write_text("")
    for where in (afile, afile / "x"):
        proc = gigagpt("queue", "run", "--runs-root", where, check=False)
        assert proc.returncode == 2 and "cannot start a queue runner there" in proc.stderr, proc.stderr
    assert not root.exists()


def test_moves_keep_their_word_however_many(dataset, tmp_path):
    root = tmp_path / "runs"
    gigagpt("sweep", "tiny", "--grid", "train.seed=1,2,3,4", *sets(dataset), "--runs-root", root)
    ids = [p.name for p, _ in queued_runs(root)]
    for _i in range(25):  # halving the gap between two orders would run out of floats
        last = [p.name for p, _ in queued_runs(root)][-1]
        assert f"{last}: position 2" in gigagpt("queue", "move", last, "2", "--runs-root", root).stdout
        assert [p.name for p, _ in queued_runs(root)][1] == last
    assert sorted(p.name for p, _ in queued_runs(root)) == sorted(ids)


def test_a_queued_model_too_big_for_the_machine_fails_before_allocating(dataset, tmp_path):
    root = tmp_path / "runs"
    gigagpt("queue", "add", "13b", "--set", f"data.dataset={dataset}", "--runs-root", root)
    (run_dir, _), = queued_runs(root)
    run_foreground(root)
    meta = read_meta(run_dir)
    assert meta.status == "failed" and "did not start (exit 2)" in meta.failure and "GiB" in meta.failure


def test_a_retry_before_the_first_checkpoint_starts_over(dataset, tmp_path):
    root = tmp_path / "runs"
    gigagpt("queue", "add", "tiny", *sets(dataset, "--set", "train.max_steps=12", "--set", "train.checkpoint_interval=1000"),
            "--runs-root", root)
    (run_dir, _), = queued_runs(root)
    out = kill_under_a_runner(root, run_dir, lambda r: r["kind"] == "train" and r["step"] >= 2)
    assert "(retry 1 of 1)" in out and read_meta(run_dir).status == "completed", out
    assert sorted(r["step"] for r in load_metrics(run_dir) if r["kind"] == "train") == list(range(1, 13))


def test_a_runner_whose_lock_file_is_removed_exits(dataset, tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    runner = subprocess.Popen([sys.executable, "-m", "gigagpt", "queue", "run", "--foreground", "--follow",
                               "--runs-root", str(root)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        wait_for(lambda: runner_state(root), "the runner")
        (root / ".queue-runner.lock").unlink()  # as `rm -rf` of the root would
        out, _ = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert ".queue-runner.lock is gone" in out
