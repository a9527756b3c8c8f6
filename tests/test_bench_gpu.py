"""bench/gpu.py where no GPU is: it says so and measures nothing; its table reads its rows."""
import importlib.util
import subprocess
import sys

import pytest
import torch
from conftest import REPO


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_exits_cleanly_and_writes_nothing(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run([sys.executable, "bench/gpu.py", "--out", str(tmp_path / "out")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "no CUDA device" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_table_has_a_row_per_variant_and_names_errors():
    rows = [{"config": "124m", "compile": True, "batch": 12, "block_size": 1024, "step_ms": 80.0, "tok_s": 153600.0,
             "mfu": 0.47, "measured_bytes": 20 * 2**30, "planned_bytes": 21 * 2**30, "planner_error": 0.05},
            {"config": "1p3b", "compile": False, "batch": 8, "block_size": 2048, "planned_bytes": 90 * 2**30,
             "error": "out of memory: CUDA out of memory"}]
    text = load_bench().table(rows, "NVIDIA H200")
    assert "| 124m | 12 x 1024 | yes | 80.0 | 153,600 | 47.0% |" in text and "+5.0% |" in text
    assert "| 1p3b | 8 x 2048 | no | out of memory" in text
