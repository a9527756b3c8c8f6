"""Real torchrun process groups (gloo on CPU): DDP and FSDP2 match one process; sharded resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, gigagpt

from gigagpt.config import load_config
from gigagpt.plan import memory_estimate, param_count
from gigagpt.store.layout import checkpoints
from gigagpt.store.meta import read_meta
from gigagpt.store.metrics import load_metrics

# fp32 so that 1 and 2 processes agree to 1e-5 (bf16 rounding would differ between the layouts).
ARGS = ["--set", "train.log_interval=1", "--set", "train.warmup_steps=2", "--set", "train.eval_steps=2",
        "--set", "model.block_size=32", "--set", "train.dtype=float32", "--set", "train.eval_interval=4",
        "--set", "train.max_steps=8"]


def losses(run, kind="train", key="loss"):
    return {r["step"]: r[key] for r in load_metrics(run) if r["kind"] == kind}


@pytest.fixture(scope="module")
def single(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("one") / "one"
    gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", *ARGS, "--run-dir", run)
    return run


@pytest.mark.parametrize("parallel, extra", [("ddp", []), ("fsdp", []),
                                             ("ddp", ["--set", "train.batch_size=4", "--set", "train.grad_accum=2"])])
def test_two_processes_match_one(dataset, tmp_path, single, parallel, extra):
    run = tmp_path / parallel
    if extra:  # the same 8 sequences per step as 2 micro-steps of 4; 2 ranks take one micro-step each
        single = tmp_path / "accum1"
        gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", *ARGS, *extra, "--run-dir", single)
    gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", *ARGS, *extra,
            "--set", f"train.parallel={parallel}", "--nproc", "2", "--run-dir", run)
    meta = read_meta(run).raw
    assert meta["world_size"] == 2 and meta["status"] == "completed"
    start = next(r for r in load_metrics(run) if r.get("event") == "start")
    assert start["parallel"] == parallel and start["world_size"] == 2
    one, two = losses(single), losses(run)
    assert sorted(two) == list(range(1, 9))
    for step in one:
        assert abs(one[step] - two[step]) < 1e-5, (step, one[step], two[step])
    for step, v in losses(single, "eval", "val_loss").items():
        assert abs(v - losses(run, "eval", "val_loss")[step]) < 1e-5
    assert (checkpoints(run)[-1].suffix == ".dcp") == (parallel == "fsdp")


def test_fsdp_sigterm_and_resume_continue_exactly(dataset, tmp_path):
    args = ["train", "tiny", "--set", f"data.dataset={dataset}", *ARGS, "--set", "train.max_steps=100000",
            "--set", "train.checkpoint_interval=100000", "--set", "train.parallel=fsdp", "--nproc", "2"]
    run = tmp_path / "term"
    proc = subprocess.Popen([sys.executable, "-m", "gigagpt", *args, "--run-dir", str(run)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and len(losses(run)) < 3:
            time.sleep(0.2)
        os.kill(read_meta(run).pid, signal.SIGTERM)  # what the dashboard's stop does: rank 0
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    meta = read_meta(run).raw
    stopped = meta["step"]
    assert meta["status"] == "stopped" and checkpoints(run)[-1].name == f"step_{stopped:08d}.dcp"
    proc = gigagpt("resume", run, "--nproc", "1", check=False)
    assert proc.returncode == 2 and "sharded" in proc.stderr
    gigagpt("resume", run, "--stop-at", stopped + 1)  # two processes again, by default
    assert read_meta(run).world_size == 2
    gigagpt("resume", run, "--stop-at", stopped + 2, "--nproc", "4")  # DCP reshards 2 -> 4
    assert read_meta(run).world_size == 4
    fresh = tmp_path / "fresh"
    gigagpt(*args, "--run-dir", fresh, "--stop-at", stopped + 2)
    resumed, reference = losses(run), losses(fresh)
    assert sorted(resumed) == sorted(reference) == list(range(1, stopped + 3))
    for step in range(1, stopped + 2):  # same world size: exact
        assert resumed[step] == reference[step]
    assert abs(resumed[stopped + 2] - reference[stopped + 2]) < 1e-5  # 4 ranks: same maths, other rounding


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_launcher_stops_the_run_quietly(dataset, tmp_path, sig):
    """A scheduler's SIGTERM (or ctrl-c's SIGINT to the process group) reaches the launcher: the ranks
    stop after their step and checkpoint; the launcher exits 128 + the signal with no traceback,
    and the ranks' notice is one line, not one per rank."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "gigagpt", "train", "tiny", "--set", f"data.dataset={dataset}", *ARGS,
                             "--set", "train.max_steps=100000", "--set", "train.parallel=ddp", "--nproc", "2",
                             "--run-dir", str(run)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and len(losses(run)) < 3:
            time.sleep(0.2)
        os.killpg(proc.pid, sig) if sig == signal.SIGINT else os.kill(proc.pid, sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig and "Traceback" not in out, out
    assert out.count(f"received {signal.Signals(sig).name}") == 1, out
    meta = read_meta(run)
    assert meta.status == "stopped" and checkpoints(run)[-1].name == f"step_{meta.step:08d}.pt"


def test_sample_reads_a_sharded_checkpoint(dataset, tmp_path, gpt2_ready):
    run = tmp_path / "fs"
    gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", *ARGS, "--set", "train.max_steps=2",
            "--set", "train.parallel=fsdp", "--nproc", "2", "--run-dir", run)
    out = gigagpt("sample", run, "--prompt", "Hi", "--max-new-tokens", "5").stdout
    assert out.startswith("Hi")


def test_bad_world_size_is_refused(dataset, tmp_path):
    proc = gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", *ARGS, "--set", "train.batch_size=3",
                   "--nproc", "2", "--run-dir", tmp_path / "x", check=False)
    assert proc.returncode == 2 and "train.batch_size = 3" in proc.stderr and not (tmp_path / "x").exists()


def test_175b_shards_on_1024_simulated_devices_without_memory():
    """fully_shard on the meta device with a fake 1024-rank process group: no parameter memory,
    and each rank's shard is what the planner divides by."""
    code = r"""
import json, torch, torch.distributed as dist
from torch.testing._internal.distributed.fake_pg import FakeStore
from torch.distributed.fsdp import fully_shard
from gigagpt.config import load_config
from gigagpt.model import build_on_meta
dist.init_process_group("fake", rank=0, world_size=1024, store=FakeStore())
cfg = load_config("configs/175b.toml", check_data=False)
model = build_on_meta(cfg.model)
for b in model.blocks:
    fully_shard(b)
fully_shard(model)
local = sum(p.to_local().numel() for p in model.parameters())
full = sum(p.numel() for p in model.parameters())
print(json.dumps({"local": local, "full": full, "meta": all(p.device.type == "meta" for p in model.parameters())}))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    cfg = load_config(REPO / "configs" / "175b.toml", check_data=False)
    n = param_count(cfg.model)
    assert out["full"] == n and out["meta"]
    assert abs(out["local"] - n / 1024) / (n / 1024) < 0.01  # padding only
    plan = memory_estimate(cfg, 1024, "fsdp")
    assert plan["weights"] == 4 * n // 1024 and plan["optimizer"] == 8 * n // 1024


def test_a_refusal_of_every_rank_is_one_line(dataset, tmp_path):
    """Both ranks refuse the device after torchrun has started them: the line shows once, status 2."""
    if sys.platform == "darwin":
        pytest.skip("the refusal here is --device mps on a machine without one")
    proc = gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", "--nproc", "2", "--device", "mps",
                   "--run-dir", tmp_path / "x", check=False)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and lines == ["gigagpt: error: --device mps: no Apple MPS device is available"], proc.stderr
    assert not (tmp_path / "x").exists()
    # the launcher makes the new run's directory under the runs root before the ranks refuse: it goes again
    proc = gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", "--nproc", "2", "--device", "mps",
                   "--runs-root", tmp_path / "runs", check=False)
    assert proc.returncode == 2 and [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")] == []


def test_a_launch_leaves_nothing_in_tmp_and_removes_what_a_killed_launcher_left(dataset, tmp_path):
    """torchrun's log directory lives in the launcher's own, which goes when it ends; the next
    launch removes a directory whose launcher is gone, and only those."""
    if sys.platform == "darwin":
        pytest.skip("the refusal here is --device mps on a machine without one")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp / f"gigagpt-said-{gone.stdout.strip()}-x1"  # a SIGKILLed launcher's
    left.mkdir()
    (left / "torchelastic").mkdir()
    kept = [tmp / f"gigagpt-said-{os.getpid()}-x2", tmp / "gigagpt-said-x3", tmp / "gigagpt-saidx"]  # live, not ours
    if os.geteuid() == 0:  # root could remove another user's: a gone launcher's of uid 65534 stays
        kept.append(tmp / f"gigagpt-said-{gone.stdout.strip()}-x4")
    for d in kept:
        d.mkdir()
    if os.geteuid() == 0:
        os.chown(kept[-1], 65534, 65534)
    proc = gigagpt("train", "tiny", "--set", f"data.dataset={dataset}", "--nproc", "2", "--device", "mps",
                   "--run-dir", tmp_path / "x", check=False, env={**os.environ, "TMPDIR": str(tmp)})
    assert proc.returncode == 2, proc.stderr
    assert sorted(p.name for p in tmp.iterdir()) == sorted(d.name for d in kept)


LIVE_RANK = """
import os, pathlib, sys, time
flag = pathlib.Path(sys.argv[1])
(flag / "ready").touch()
while not (flag / "go").exists():
    time.sleep(0.05)
said = os.environ["GIGAGPT_SAID_DIR"].partition(":")[2]
sys.exit(0 if os.path.isdir(os.path.join(said, "torchelastic")) else 3)
"""


def test_a_live_launcher_keeps_its_directory_where_its_pid_cannot_be_seen(tmp_path, monkeypatch):
    """A launcher in another pid namespace sharing the temporary directory, or one whose start time
    moved with a clock stepped forward, looks gone by its pid: its lock on its directory keeps it."""
    from gigagpt import torchrun
    from gigagpt.store import lock

    tmp, flag = tmp_path / "tmp", tmp_path / "flag"
    tmp.mkdir()
    flag.mkdir()
    (tmp_path / "rank.py").write_text(LIVE_RANK)
    launcher = subprocess.Popen([sys.executable, "-m", "gigagpt.torchrun", "--standalone", "--nproc-per-node=1",
                                 tmp_path / "rank.py", flag], cwd=REPO, env={**os.environ, "TMPDIR": str(tmp)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while not (flag / "ready").exists() and launcher.poll() is None:
            time.sleep(0.05)
        monkeypatch.setattr(lock, "pid_alive", lambda pid, started_by=None: False)  # it cannot be seen
        monkeypatch.setattr(torchrun.tempfile, "tempdir", str(tmp))
        torchrun.remove_stale_said_dirs()
        assert [p.name.startswith(f"gigagpt-said-{launcher.pid}-") for p in tmp.iterdir()] == [True]
    finally:
        (flag / "go").touch()
        out = launcher.communicate(timeout=120)[0]
    assert launcher.returncode == 0, out
    assert list(tmp.iterdir()) == []


def test_a_refusal_of_one_rank_still_shows(tmp_path):
    """Only rank 1 refuses (rank 0 plans and exits 0): its line shows, and its status is the job's."""
    script = tmp_path / "ranks.py"
    script.write_text("import os, sys\nfrom gigagpt.cli import main\n"
                      "sys.exit(main(['plan', 'tiny' if os.environ['RANK'] == '0' else 'no-such-preset']))\n")
    proc = subprocess.run([sys.executable, "-m", "gigagpt.torchrun", "--standalone", "--nproc-per-node=2", script],
                          capture_output=True, text=True, timeout=240, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "no-such-preset" in lines[0], proc.stderr
    assert "parameters" in proc.stdout.lower(), proc.stdout  # rank 0's plan


def test_an_inherited_said_dir_silences_nothing(tmp_path):
    """GIGAGPT_SAID_DIR counts only for the ranks of the launcher that set it: a process that
    inherited it (a stale export, a command started from inside a rank) prints every line."""
    env = {**os.environ, "GIGAGPT_SAID_DIR": f"1:{tmp_path}"}  # another launcher's (pid 1)
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "gigagpt", "train", str(tmp_path / "none.toml")], env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "not found" in proc.stderr, proc.stderr
