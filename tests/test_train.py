"""Real trainer subprocesses on a small real-format dataset: run directory, exact resume, signals."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, gigagpt, overflow_checkpoint

from gigagpt.store.curves import load_curves
from gigagpt.store.layout import checkpoints
from gigagpt.store.meta import read_meta
from gigagpt.store.metrics import Reader, load_metrics
from gigagpt.store.summary import run_status

# tiny, made smaller still so each run takes a few seconds; every step logged.
FAST = ["--set", "train.log_interval=1", "--set", "train.warmup_steps=2", "--set", "train.eval_steps=2",
        "--set", "model.block_size=32"]


def train_args(dataset, *extra):
    return ["train", "tiny", "--set", f"data.dataset={dataset}", *FAST, *extra]


def losses(run_dir, kind="train", key="loss"):
    return {r["step"]: r[key] for r in load_metrics(run_dir) if r["kind"] == kind}


def test_train_writes_the_run_directory(dataset, tmp_path):
    run = tmp_path / "r1"
    proc = gigagpt(*train_args(dataset, "--run-dir", run, "--set", "train.max_steps=12",
                               "--set", "train.eval_interval=6", "--set", "train.checkpoint_interval=4",
                               "--set", "train.keep_checkpoints=2"))
    assert "step 12/12" in proc.stdout
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["step"] == 12 and meta["max_steps"] == 12
    for key in ("id", "pid", "host", "device", "command", "created", "updated", "heartbeat", "versions",
                "failure", "params", "preset"):
        assert key in meta, key
    assert meta["preset"] == "tiny" and meta["device"] == "cpu" and meta["versions"]["torch"] == torch.__version__
    records = load_metrics(run)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 13))
    for key in ("loss", "lr", "grad_norm", "tokens", "tok_s", "mfu", "time", "step_time", "rss",
                "mem_alloc", "mem_peak"):
        assert key in train[0], key
    assert train[-1]["tokens"] == 12 * 8 * 32 and train[0]["mfu"] > 0 and train[0]["rss"] > 10e6
    assert [r["step"] for r in records if r["kind"] == "eval"] == [6, 12]
    assert [r["step"] for r in records if r["kind"] == "checkpoint"] == [4, 8, 12]
    assert sum(r["loss"] for r in train[-3:]) < sum(r["loss"] for r in train[:3])  # it learns
    assert [p.name for p in checkpoints(run)] == ["step_00000008.pt", "step_00000012.pt"]
    assert not [p for p in (run / "checkpoints").iterdir() if "tmp" in p.name]
    state = torch.load(checkpoints(run)[-1], weights_only=True)
    assert {"model", "optimizer", "step", "tokens", "rng", "config", "best_val"} <= set(state)
    assert state["config"]["train"]["max_steps"] == 12 and state["step"] == 12
    resolved = (run / "config.toml").read_text()
    assert "block_size = 32" in resolved and f'dataset = "{dataset}"' in resolved
    log = (run / "train.log").read_text()
    assert "step 12/12" in log and "completed" in log


def test_default_run_id_and_refusing_to_clobber(dataset, tmp_path):
    root = tmp_path / "runs"
    gigagpt(*train_args(dataset, "--runs-root", root, "--set", "train.max_steps=2", "--name", "demo"))
    (run,) = root.iterdir()
    assert run.name.startswith("demo-")
    before = (run / "metrics.jsonl").read_bytes()
    proc = gigagpt(*train_args(dataset, "--run-dir", run), check=False)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
    assert (run / "metrics.jsonl").read_bytes() == before
    for bad in ("../escape", "a/b", ".hidden"):
        proc = gigagpt(*train_args(dataset, "--runs-root", root, "--name", bad), check=False)
        assert proc.returncode == 2 and "run name" in proc.stderr, bad
    assert len(list(root.iterdir())) == 1 and not (tmp_path / "escape").exists()


@pytest.fixture(scope="module")
def reference_run(dataset, tmp_path_factory):
    """24 steps without interruption: the loss sequence the interrupted runs must reproduce."""
    run = tmp_path_factory.mktemp("ref") / "ref"
    gigagpt(*train_args(dataset, "--run-dir", run, "--set", "train.max_steps=24",
                        "--set", "train.eval_interval=6", "--set", "model.dropout=0.1"))
    return run


def test_stop_and_resume_is_bitwise_exact(dataset, tmp_path, reference_run):
    run = tmp_path / "split"
    gigagpt(*train_args(dataset, "--run-dir", run, "--set", "train.max_steps=24",
                        "--set", "train.eval_interval=6", "--set", "model.dropout=0.1", "--stop-at", "12"))
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "stopped" and meta["step"] == 12
    assert checkpoints(run)[-1].name == "step_00000012.pt"
    proc = gigagpt("resume", run)
    assert "resumed from step_00000012.pt at step 12" in proc.stdout
    assert json.loads((run / "meta.json").read_text())["status"] == "completed"
    ref = losses(reference_run)
    assert len(ref) == 24 and losses(run) == ref  # every step, exactly equal floats
    assert losses(run, "eval", "val_loss") == losses(reference_run, "eval", "val_loss")


def test_sigterm_checkpoints_and_resume_continues_exactly(dataset, tmp_path):
    run = tmp_path / "term"
    args = train_args(dataset, "--run-dir", run, "--set", "train.max_steps=100000",
                      "--set", "train.checkpoint_interval=100000")
    proc = subprocess.Popen([sys.executable, "-m", "gigagpt", *map(str, args)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(losses(run)) < 5:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    meta = json.loads((run / "meta.json").read_text())
    stopped_at = meta["step"]
    assert meta["status"] == "stopped" and stopped_at >= 5
    assert checkpoints(run)[-1].name == f"step_{stopped_at:08d}.pt"
    assert "received SIGTERM" in (run / "train.log").read_text()
    # Continue three steps; a fresh run told to stop at the same step must match it exactly.
    gigagpt("resume", run, "--stop-at", stopped_at + 3)
    fresh = tmp_path / "fresh"
    gigagpt(*train_args(dataset, "--run-dir", fresh, "--set", "train.max_steps=100000",
                        "--set", "train.checkpoint_interval=100000", "--stop-at", stopped_at + 3))
    assert losses(run) == losses(fresh) and len(losses(run)) == stopped_at + 3


def test_sigkill_is_crashed_and_resume_rolls_back(dataset, tmp_path):
    run = tmp_path / "killed"
    args = train_args(dataset, "--run-dir", run, "--set", "train.max_steps=100000",
                      "--set", "train.checkpoint_interval=3")
    proc = subprocess.Popen([sys.executable, "-m", "gigagpt", *map(str, args)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (checkpoints(run) and len(losses(run)) % 3 == 1):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert read_meta(run).status == "running" and run_status(run) == "crashed"
    last_ckpt = int(checkpoints(run)[-1].stem.split("_")[1])
    logged = max(losses(run))
    assert logged > last_ckpt  # steps after the checkpoint were logged and will be recomputed
    with open(run / "metrics.jsonl", "a") as f:  # a line the kill tore in half
        f.write(f'{{"kind":"train","step":{logged + 1},"loss":1.5,"lr":0.1,"ti')
    gigagpt("resume", run, "--stop-at", logged + 2)
    steps = [r["step"] for r in load_metrics(run) if r["kind"] == "train"]
    assert steps == list(range(1, logged + 3))
    # the resumed trainer ended the torn line first: it stays one bad line, nothing joins it
    reader = Reader(run / "metrics.jsonl")
    list(reader)
    assert reader.bad == 1
    curves = load_curves(run)
    assert curves["train"]["step"].tolist() == steps
    assert run_status(run) == "stopped"


def test_resume_refusals(dataset, tmp_path):
    run = tmp_path / "done"
    gigagpt(*train_args(dataset, "--run-dir", run, "--set", "train.max_steps=3"))
    proc = gigagpt("resume", run, check=False)
    assert proc.returncode == 2 and "completed at step 3" in proc.stderr and "train.max_steps" in proc.stderr
    before = (run / "config.toml").read_text()
    proc = gigagpt("resume", run, "--set", "model.n_layer=3", "--set", "train.max_steps=5", check=False)
    assert proc.returncode == 2 and "model.n_layer" in proc.stderr and "keeps its [model]" in proc.stderr
    assert (run / "config.toml").read_text() == before
    proc = gigagpt("resume", tmp_path / "nothing-here", check=False)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    gigagpt("resume", run, "--set", "train.max_steps=5")
    assert read_meta(run).status == "completed" and max(losses(run)) == 5


def test_non_finite_loss_fails_without_checkpointing_bad_weights(dataset, tmp_path):
    run = tmp_path / "nan"
    gigagpt(*train_args(dataset, "--run-dir", run, "--set", "train.checkpoint_interval=1",
                        "--set", "train.max_steps=50", "--stop-at", 2))
    overflow_checkpoint(run)  # the next forward overflows: no config value may diverge on its own
    proc = gigagpt("resume", run, check=False)
    assert proc.returncode == 1
    meta = read_meta(run)
    assert meta.status == "failed" and "non-finite" in meta.failure
    failed_step = int(meta.failure.split("at step ")[1].split(";")[0])
    assert failed_step == 3 and [c.name for c in checkpoints(run)] == ["step_00000001.pt", "step_00000002.pt"]
    events = [r for r in load_metrics(run) if r["kind"] == "event"]
    assert events[-1]["event"] == "failed" and "non-finite" in events[-1]["reason"]


def test_missing_device_is_an_argument_error(dataset, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = gigagpt(*train_args(dataset, "--run-dir", tmp_path / "c", "--device", "cuda"), check=False)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and not (tmp_path / "c").exists()


def test_sample_continues_the_prompt_from_the_latest_checkpoint(dataset, tmp_path, gpt2_ready):
    run = tmp_path / "s"
    proc = gigagpt("sample", run, check=False)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr
    gigagpt(*train_args(dataset, "--run-dir", run, "--set", "train.max_steps=4"))
    args = ["sample", run, "--prompt", "Hello world", "--max-new-tokens", "12", "--num-samples", "2"]
    out = gigagpt(*args).stdout
    assert out.startswith("Hello world") and out.count("Hello world") == 2 and len(out) > len("Hello world") * 2
    assert gigagpt(*args).stdout == out  # seeded: the same command prints the same text
    assert gigagpt(*args, "--seed", "7").stdout != out


def test_padded_vocabulary_trains_resumes_exactly_and_samples(dataset, tmp_path, gpt2_ready):
    """model.pad_vocab_to = 64 (50257 -> 50304 rows): checkpoints hold the padded table, a stopped
    run resumes to the same losses as one that never stopped, and sample prints text from it."""
    args = ["--set", "model.pad_vocab_to=64", "--set", "train.max_steps=6", "--set", "train.eval_interval=3"]
    gigagpt(*train_args(dataset, "--run-dir", tmp_path / "ref", *args))
    gigagpt(*train_args(dataset, "--run-dir", tmp_path / "cut", *args, "--stop-at", "3"))
    state = torch.load(checkpoints(tmp_path / "cut")[-1], weights_only=True)
    assert state["model"]["wte.weight"].shape == (50304, 64) and state["config"]["model"]["pad_vocab_to"] == 64
    assert "resumed from step_00000003.pt at step 3" in gigagpt("resume", tmp_path / "cut").stdout
    assert losses(tmp_path / "cut") == losses(tmp_path / "ref") and len(losses(tmp_path / "ref")) == 6
    assert read_meta(tmp_path / "ref").params == 50304 * 64 + 32 * 64 + 2 * 12 * 64 * 64 + 2 * 13 * 64 + 2 * 64
    out = gigagpt("sample", tmp_path / "cut", "--prompt", "Hello", "--max-new-tokens", "12").stdout
    assert out.startswith("Hello") and len(out) > len("Hello\n")
