"""The trainer's side of the run store, with real trainer subprocesses and real files: exact resume
at any stop step, checkpoint fallback, the run lock, a full disk, stale temp files, --run-dir."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from conftest import REPO, fill, gigagpt

from gigagpt.settings import CEREBRAS_ENV
from gigagpt.store.layout import checkpoints
from gigagpt.store.lock import HOST, RunLock, liveness
from gigagpt.store.meta import read_meta
from gigagpt.store.metrics import load_metrics
from gigagpt.store.summary import run_status

LOG = 3  # log_interval: stops at 1..2*LOG cover every place in a logging interval
# tiny with a 512-token vocabulary (the walk dataset's ids are < 400): a checkpoint is 1.6 MB, not 40
BASE = ["--set", f"train.log_interval={LOG}", "--set", "train.warmup_steps=2", "--set", "train.eval_steps=2",
        "--set", "model.block_size=32", "--set", "model.vocab_size=512", "--set", "train.eval_interval=4",
        "--set", "model.dropout=0.1", "--set", "train.max_steps=7"]


@pytest.fixture(scope="module")
def walk512(dataset, tmp_path_factory):
    """The session's walk dataset, declared with the vocabulary it uses."""
    small = tmp_path_factory.mktemp("walk512")
    for split in ("train", "val"):
        shutil.copy(dataset / f"{split}.bin", small / f"{split}.bin")
    meta = json.loads((dataset / "meta.json").read_text())
    (small / "meta.json").write_text(json.dumps({**meta, "vocab_size": 512}))
    return small


def train_args(data, run, *extra):
    return ["train", "tiny", "--set", f"data.dataset={data}", *BASE, "--run-dir", run, *extra]


def curves(run):
    """Every kept train and eval loss by step (resume roll-backs applied), and the train steps."""
    recs = load_metrics(run)
    train = {r["step"]: r["loss"] for r in recs if r["kind"] == "train"}
    return train, {r["step"]: r["val_loss"] for r in recs if r["kind"] == "eval"}


def popen(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "gigagpt", *map(str, args)], cwd=REPO, start_new_session=True,
                            **{"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **kw})


def wait_for(what, timeout=120, every=0.02):
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def lines_of(run):
    try:
        return (run / "metrics.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []


def reached(run, step):
    """Whether the trainer finished `step` (with checkpoint_interval=1 every step has a checkpoint
    line; step 0 is the start event, written once signals are handled)."""
    if step == 0:
        return any('"event":"start"' in line for line in lines_of(run))
    return any(f'"kind":"checkpoint","step":{step},' in line for line in lines_of(run))


@pytest.fixture(scope="module")
def reference(walk512, tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "ref"
    gigagpt(*train_args(walk512, run))
    return curves(run)


def test_stop_at_any_step_resumes_bitwise(walk512, tmp_path, reference):
    """--stop-at N and SIGTERM at every step of two logging intervals: resumed, the train lines
    (which average the steps since the previous one) and the evals equal the uninterrupted run's."""
    ref_train, ref_eval = reference
    assert sorted(ref_train) == [3, 6, 7] and sorted(ref_eval) == [4, 7]

    def stop_at(n):
        run = tmp_path / f"at{n}"
        gigagpt(*train_args(walk512, run, "--stop-at", n))
        assert read_meta(run).status == "stopped" and read_meta(run).step == n
        gigagpt("resume", run)
        return n, run

    def sigterm(n):
        run = tmp_path / f"term{n}"
        proc = popen(*train_args(walk512, run, "--set", "train.checkpoint_interval=1",
                                 "--set", "train.keep_checkpoints=1"))
        try:
            wait_for(lambda: reached(run, n - 1) or proc.poll() is not None)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=120) == 0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        meta = read_meta(run)
        assert meta.status == "stopped", meta
        assert "received SIGTERM" in (run / "train.log").read_text()
        stopped = meta.step
        gigagpt("resume", run)
        return stopped, run

    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(stop_at, n) for n in range(1, 2 * LOG + 1)]
        jobs += [pool.submit(sigterm, n) for n in range(1, 2 * LOG + 1)]
        done = [j.result() for j in jobs]
    for stopped, run in done:
        assert curves(run) == (ref_train, ref_eval), (run.name, stopped)
        assert read_meta(run).status == "completed"
    resumes = {r["step"]: r for r in load_metrics(tmp_path / "at4") if r.get("event") == "resume"}
    assert resumes[4]["log_steps"] == 1 and resumes[4]["log_loss_sum"] > 0  # step 4 carried into the step-6 line
    print("SIGTERM stopped at steps", sorted(s for s, run in done if run.name.startswith("term")))


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(walk512, tmp_path, reference):
    run = tmp_path / "fb"
    gigagpt(*train_args(walk512, run, "--set", "train.checkpoint_interval=2", "--set", "train.keep_checkpoints=3",
                        "--stop-at", 6))
    assert [p.name for p in checkpoints(run)] == ["step_00000002.pt", "step_00000004.pt", "step_00000006.pt"]
    ckpt = run / "checkpoints"
    (ckpt / "step_00000006.pt").write_bytes((ckpt / "step_00000006.pt").read_bytes()[:5000])  # truncated
    evil = tmp_path / "evil.py"  # a pickle that runs code when loaded: weights_only must refuse it
    evil.write_text("import os, sys, torch\nclass E:\n    def __reduce__(self):\n        return (os.system, ('touch "
                    f"{tmp_path}/pwned',))\ntorch.save({{'model': E()}}, sys.argv[1])\n")
    subprocess.run([sys.executable, evil, ckpt / "step_00000004.pt"], check=True)
    proc = gigagpt("resume", run)
    assert "resumed from step_00000002.pt at step 2" in proc.stdout and not (tmp_path / "pwned").exists()
    log = (run / "train.log").read_text()
    assert "skipped checkpoints/step_00000006.pt: unreadable" in log
    assert "skipped checkpoints/step_00000004.pt: refused by torch.load(weights_only=True)" in log
    skipped = [r for r in load_metrics(run) if r.get("event") == "checkpoint_skipped"]
    assert [(r["path"], r["checkpoint_step"], r["step"]) for r in skipped] == [
        ("checkpoints/step_00000006.pt", 6, 2), ("checkpoints/step_00000004.pt", 4, 2)]
    assert (ckpt / "step_00000006.pt.skipped").is_file() and (ckpt / "step_00000004.pt.skipped").is_file()
    assert curves(run) == reference  # from step 2 on, exactly the uninterrupted run
    assert [p.name for p in checkpoints(run)] == ["step_00000004.pt", "step_00000006.pt", "step_00000007.pt"]


def test_a_checkpoint_past_its_own_target_is_not_trusted(walk512, tmp_path, reference):
    """A crafted .pt whose step is past its config's max_steps (10**20) made resume skip the loop
    and call the run completed at that step; it is skipped as not a gigagpt checkpoint."""
    run = tmp_path / "huge"
    gigagpt(*train_args(walk512, run, "--set", "train.checkpoint_interval=2", "--stop-at", 4))
    newest = checkpoints(run)[-1]
    state = torch.load(newest, weights_only=True)
    torch.save({**state, "step": 10**20}, newest)
    proc = gigagpt("resume", run)
    assert "resumed from step_00000002.pt at step 2" in proc.stdout
    assert "step = 100000000000000000000 with max_steps" in (run / "train.log").read_text()
    assert curves(run) == reference


def test_sample_falls_back_to_the_newest_checkpoint_that_loads(dataset, tmp_path, gpt2_ready):
    run = tmp_path / "s"
    gigagpt(*train_args(dataset, run, "--set", "model.vocab_size=50257", "--set", "train.checkpoint_interval=1",
                        "--set", "train.max_steps=2"))
    (run / "checkpoints" / "step_00000002.pt").write_bytes(b"PK\x03\x04 and then nothing")
    proc = gigagpt("sample", run, "--prompt", "Hi", "--max-new-tokens", "3")
    assert proc.stdout.startswith("Hi")
    assert proc.stderr.strip() == ("gigagpt: sampling from step_00000001.pt; skipped step_00000002.pt: unreadable "
                                   "(not a zip archive as torch.save writes: truncated or corrupt)")


def test_no_loadable_checkpoint_refuses_and_from_scratch_starts_over(walk512, tmp_path, reference, gpt2_ready):
    run = tmp_path / "none"
    gigagpt(*train_args(walk512, run, "--stop-at", 2))
    (run / "checkpoints" / "step_00000002.pt").write_bytes(b"not a checkpoint")
    files = ["meta.json", "metrics.jsonl", "config.toml", "train.log", "checkpoints/step_00000002.pt"]
    before = {f: (run / f).read_bytes() for f in files}
    for cmd in (["resume", run], ["resume", run, "--set", "train.max_steps=9"], ["sample", run]):
        proc = gigagpt(*cmd, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "step_00000002.pt: unreadable" in line and "no checkpoint loads" in line, line
        assert ("--from-scratch" in line) == (cmd[0] == "resume")
    assert {f: (run / f).read_bytes() for f in files} == before  # nothing written, nothing moved
    proc = gigagpt("resume", run, "--from-scratch")
    assert "starting over at step 0" in proc.stdout
    assert curves(run) == reference  # a fresh start: the same run as one never interrupted
    assert (run / "checkpoints" / "step_00000002.pt.skipped").read_bytes() == b"not a checkpoint"

    loadable = tmp_path / "ok"
    gigagpt(*train_args(walk512, loadable, "--stop-at", 1))
    proc = gigagpt("resume", loadable, "--from-scratch", check=False)
    assert proc.returncode == 2 and "step_00000001.pt loads" in proc.stderr
    for ckpt in checkpoints(loadable):
        ckpt.unlink()
    proc = gigagpt("resume", loadable, check=False)
    assert proc.returncode == 2 and "has no checkpoint to resume from" in proc.stderr
    assert "--from-scratch" in proc.stderr


def test_a_suspended_trainer_keeps_its_run(walk512, tmp_path):
    """SIGSTOP: the lock is still held, so the run is running (not crashed) even when its
    heartbeat is old and meta.json names a dead pid, and resume or a second trainer is refused."""
    run = tmp_path / "held"
    proc = popen(*train_args(walk512, run, "--set", "train.max_steps=100000", "--set", "train.log_interval=1",
                             "--set", "train.checkpoint_interval=3"))
    try:
        wait_for(lambda: any('"kind":"checkpoint"' in line for line in lines_of(run)))
        os.kill(proc.pid, signal.SIGSTOP)
        dead = subprocess.Popen(["true"])
        dead.wait()
        meta = json.loads((run / "meta.json").read_text())
        (run / "meta.json").write_text(json.dumps({**meta, "heartbeat": 1.0, "updated": 1.0, "pid": dead.pid}))
        assert liveness(run, HOST, dead.pid, 1.0) == "running" and run_status(run) == "running"
        for cmd in (["resume", run], ["resume", run, "--from-scratch"]):
            out = gigagpt(*cmd, check=False)
            assert out.returncode == 2 and f"in use by process {proc.pid}" in out.stderr, out.stderr
            assert len(out.stderr.strip().splitlines()) == 1
        out = gigagpt(*train_args(walk512, run), check=False)
        assert out.returncode == 2 and "already holds a run" in out.stderr
        os.kill(proc.pid, signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert run_status(run) == "stopped"
    # A second trainer in a directory whose lock another process holds (a launcher, a trainer
    # that has not written meta.json yet): refused by the lock, nothing written.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with RunLock(fresh).acquire():
        out = gigagpt(*train_args(walk512, fresh), check=False)
        assert out.returncode == 2 and f"in use by process {os.getpid()}" in out.stderr
        with RunLock(run).acquire():
            out = gigagpt("resume", run, check=False)
            assert out.returncode == 2 and f"in use by process {os.getpid()}" in out.stderr
    assert sorted(os.listdir(fresh)) == [".lock"]


def test_launches_in_the_same_second_get_their_own_directories(walk512, tmp_path):
    root = tmp_path / "runs"
    procs = [popen("train", "tiny", "--set", f"data.dataset={walk512}", *BASE, "--set", "train.max_steps=2",
                   "--runs-root", root, "--name", "same") for _ in range(3)]
    assert [p.wait(timeout=200) for p in procs] == [0, 0, 0]
    runs = sorted(root.iterdir())
    assert len(runs) == 3 and all(read_meta(r).status == "completed" for r in runs)
    assert len({read_meta(r).pid for r in runs}) == 3


def test_run_dir_that_is_not_a_run_is_refused_untouched(walk512, tmp_path):
    target = tmp_path / "project"
    target.mkdir()
    (target / "config.toml").write_text("[mine]\nkeep = true\n")
    (target / "notes.txt").write_text("precious")
    stamps = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in target.iterdir()}
    proc = gigagpt(*train_args(walk512, target), check=False)
    assert proc.returncode == 2 and "not empty and not a run" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in target.iterdir()} == stamps


def test_stale_temp_files_are_removed_at_start(walk512, tmp_path):
    run = tmp_path / "stale"
    gigagpt(*train_args(walk512, run, "--stop-at", 2))
    litter = [run / "checkpoints" / ".step_00000003.pt.tmp-99999", run / ".meta.json.tmp-99998",
              run / "checkpoints" / ".step_00000004.dcp.tmp"]
    litter[0].write_bytes(b"half a checkpoint")
    litter[1].write_text("{")
    litter[2].mkdir()
    (litter[2] / "__0_0.distcp").write_bytes(b"shard")
    gigagpt("resume", run, "--stop-at", 3)
    assert not any(os.path.lexists(p) for p in litter)
    log = (run / "train.log").read_text()
    assert "removed temp files an interrupted write left" in log and ".step_00000003.pt.tmp-99999" in log
    assert not os.path.lexists(run / ".reserve.tmp")  # the trainer's own reserve goes when it ends


# ---------------------------------------------------------------------------- a full disk (conftest.small_disk)

def ended_failed(run, what, proc, out):
    """The run ended `failed` with the OS's reason naming `what`, in meta.json and as the last
    metrics line, with exit code 1 and no traceback."""
    text = out.read_text()
    assert proc.returncode == 1 and "Traceback" not in text, text[-3000:]
    meta = read_meta(run)
    assert meta.status == "failed", meta
    assert meta.failure.startswith(f"cannot write {what}") and "[Errno 28] No space left on device" in meta.failure
    last = json.loads(lines_of(run)[-1])
    assert last["event"] == "failed" and last["reason"] == meta.failure
    assert f"failed ({meta.failure})" in text
    return meta


def test_a_full_disk_fails_the_run_with_the_os_reason(walk512, tmp_path, small_disk):
    # The checkpoint does not fit (1.6 MB).
    run, out = small_disk("1m") / "ckpt", tmp_path / "ckpt.out"
    with open(out, "w") as f:
        proc = popen(*train_args(walk512, run, "--set", "train.checkpoint_interval=2"), stdout=f, stderr=f)
        proc.wait(timeout=200)
    ended_failed(run, "checkpoints/step_00000002.pt", proc, out)
    assert not os.listdir(run / "checkpoints")  # the half-written temp file is gone
    # Something else fills the disk while the run logs every step: the next metrics line (or
    # meta.json) cannot be written; the reserve freed at the end lets the run say so.
    disk = small_disk("16m")
    run, out = disk / "lines", tmp_path / "lines.out"
    with open(out, "w") as f:
        proc = popen(*train_args(walk512, run, "--set", "train.log_interval=1", "--set", "train.max_steps=100000",
                                 "--set", "train.checkpoint_interval=100000"), stdout=f, stderr=f)
        try:
            wait_for(lambda: sum('"kind":"train"' in line for line in lines_of(run)) >= 2)
            fill(disk)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    meta = ended_failed(run, "", proc, out)
    assert meta.failure.split(":")[0] in ("cannot write metrics.jsonl", "cannot write meta.json")
    assert not os.path.lexists(run / ".reserve.tmp")


def test_the_heartbeat_survives_write_errors(walk512, tmp_path, small_disk):
    """meta.json cannot be written for a while: the heartbeat says so once and keeps trying, and
    writes it again once there is room (the old one died on its first error)."""
    disk = small_disk("8m")  # room for the checkpoint of the stop at the end
    run, out = disk / "beat", tmp_path / "beat.out"
    with open(out, "w") as f:  # nothing but the heartbeat writes between steps 1 and 100000
        proc = popen(*train_args(walk512, run, "--set", "train.log_interval=100000", "--set", "train.max_steps=100000",
                                 "--set", "train.eval_interval=100000", "--set", "train.checkpoint_interval=100000"),
                     stdout=f, stderr=f)
    try:
        wait_for(lambda: any('"event":"start"' in line for line in lines_of(run)))
        fill(disk)
        wait_for(lambda: "heartbeat: cannot write meta.json: [Errno 28]" in out.read_text(), timeout=60, every=0.2)
        time.sleep(12)  # one more failed beat: said once, not again
        (disk / "filler").unlink()
        wait_for(lambda: "heartbeat: meta.json written again" in out.read_text(), timeout=60, every=0.2)
        assert proc.poll() is None and out.read_text().count("heartbeat: cannot write") == 1
        assert time.time() - read_meta(run).heartbeat < 15 and run_status(run) == "running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert read_meta(run).status == "stopped"


# ---------------------------------------------------------------------------- the Cerebras trainer

@pytest.mark.skipif(not (CEREBRAS_ENV / "bin" / "python").exists(),
                    reason="no Cerebras SDK environment: run scripts/cerebras-env.sh")
def test_cerebras_resume_falls_back_past_a_damaged_checkpoint(walk512, tmp_path, monkeypatch):
    """The SDK's trainer (CPU target) on the same writer: a truncated newest .mdl is skipped and set
    aside; with none left that loads, resume refuses with one line and writes nothing."""
    settings = tmp_path / "gigagpt.toml"  # the user's cluster settings stay out of it
    settings.write_text("")
    monkeypatch.setenv("GIGAGPT_SETTINGS", str(settings))
    run = tmp_path / "csx"
    args = ["train", "tiny", "--backend", "cerebras", "--set", f"data.dataset={walk512}", *BASE,
            "--set", "cerebras.target=CPU", "--set", "train.dtype=float32", "--set", "train.checkpoint_interval=2",
            "--run-dir", run, "--stop-at", "4"]
    gigagpt(*args, timeout=300)
    assert [p.name for p in checkpoints(run)] == ["step_00000002.mdl", "step_00000004.mdl"]
    newest = run / "checkpoints" / "step_00000004.mdl"
    newest.write_bytes(newest.read_bytes()[:4096])
    proc = gigagpt("resume", run, "--stop-at", "3", timeout=300)
    assert "resumed from step_00000002.mdl at step 2" in proc.stdout
    skipped = [r for r in load_metrics(run) if r.get("event") == "checkpoint_skipped"]
    assert [(r["checkpoint_step"], r["step"]) for r in skipped] == [(4, 2)] and "unreadable" in skipped[0]["reason"]
    assert (run / "checkpoints" / "step_00000004.mdl.skipped").is_file()
    assert read_meta(run).status == "stopped" and read_meta(run).step == 3
    for ckpt in checkpoints(run):
        ckpt.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    before = (run / "metrics.jsonl").read_bytes(), (run / "meta.json").read_bytes()
    proc = gigagpt("resume", run, check=False, timeout=300)
    assert proc.returncode == 2 and "no checkpoint loads" in proc.stderr and "Traceback" not in proc.stderr
    assert ((run / "metrics.jsonl").read_bytes(), (run / "meta.json").read_bytes()) == before


def test_a_resume_never_writes_through_a_planted_log(walk512, tmp_path):
    """metrics.jsonl a symlink out of the run, train.log a FIFO: the resume neither appends to the
    link's target nor blocks on the FIFO; it fails with one line naming metrics.jsonl."""
    run = tmp_path / "planted"
    gigagpt(*train_args(walk512, run, "--stop-at", 2))
    outside = tmp_path / "precious.txt"
    outside.write_text("precious\n")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(outside)
    (run / "train.log").unlink()
    os.mkfifo(run / "train.log")
    proc = gigagpt("resume", run, "--stop-at", 3, check=False, timeout=120)
    assert outside.read_text() == "precious\n"
    assert proc.returncode == 1 and "cannot write metrics.jsonl" in proc.stdout + proc.stderr
    meta = read_meta(run)
    assert meta.status == "failed" and "metrics.jsonl" in meta.raw["failure"]


def test_sample_skips_a_sharded_checkpoint_whose_metadata_is_damaged(dataset, tmp_path, gpt2_ready):
    """A .metadata that is not DCP's Metadata (stock dcp.load would raise a CheckpointException, a
    BaseException): it is skipped like any damaged checkpoint, not a traceback."""
    run = tmp_path / "d"
    gigagpt(*train_args(dataset, run, "--set", "model.vocab_size=50257", "--set", "train.max_steps=2",
                        "--set", "train.checkpoint_interval=1", "--stop-at", 1))
    good = run / "checkpoints" / "step_00000001.pt"
    dcp = run / "checkpoints" / "step_00000002.dcp"
    dcp.mkdir()
    shutil.copy(good, dcp / "extra.pt")  # a whole checkpoint's keys include a sharded one's
    (dcp / ".metadata").write_bytes(b"\x80\x04K\x05.")  # a pickled 5, not a Metadata
    (dcp / "__0_0.distcp").write_bytes(b"shard")
    proc = gigagpt("sample", run, "--prompt", "Hi", "--max-new-tokens", "3", check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("Hi"), proc.stderr
    # one line: gigagpt.safe_dcp reads .metadata before DCP could log its own fallback traceback
    assert proc.stderr.strip().splitlines() == [
        "gigagpt: sampling from step_00000001.pt; skipped step_00000002.dcp: "
        "unreadable (.metadata holds a pickled int, not checkpoint metadata)"]
