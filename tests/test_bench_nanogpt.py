"""bench/end_to_end.py and bench/train_step.py against nanoGPT: a directory that is not a nanoGPT
checkout is one line and exit 2; without --nanogpt the end-to-end bench says how to get one and
measures `gigagpt train` alone (real runs of a shrunk, eager tiny: 1 and 2 steps)."""
import subprocess
import sys

import pytest
from conftest import REPO

SKIP_NOTE = "nanoGPT bf16+compile: skipped; pass --nanogpt DIR"


@pytest.mark.parametrize("bench", ["end_to_end.py", "train_step.py"])
def test_a_directory_without_model_py_is_refused(bench, tmp_path):
    proc = subprocess.run([sys.executable, f"bench/{bench}", "--nanogpt", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [f"--nanogpt {tmp_path}: no model.py there, not a nanoGPT checkout "
                                        "(git clone https://github.com/karpathy/nanoGPT)"]


def test_without_nanogpt_end_to_end_measures_ours_alone(dataset):
    proc = subprocess.run([sys.executable, "bench/end_to_end.py", "--config", "tiny", "--set", f"data.dataset={dataset}",
                           "--set", "model.block_size=32", "--set", "train.eval_steps=1", "--set", "train.compile=false",
                           "--short", "1", "--long", "2", "--rounds", "1", "--warmup", "0"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(SKIP_NOTE) and "git clone https://github.com/karpathy/nanoGPT" in lines[0]
    assert lines[1].startswith("round 1: gigagpt train ") and "nanoGPT" not in lines[1]
    assert any(line.startswith("gigagpt train ") and "tok/s" in line and "peak RSS" in line for line in lines)
    assert not any(" vs " in line for line in lines)
