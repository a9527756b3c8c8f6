"""The device a run trains on: picking it, its memory, and its peak FLOP/s (the MFU denominator)."""
from __future__ import annotations

import json
import os
import platform
import time

import psutil
import torch

from gigagpt.config import ConfigError
from gigagpt.plan import peak_for_device_name
from gigagpt.settings import cache_dir
from gigagpt.store.files import write_json


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (torch sees none)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: no Apple MPS device is available")
    return torch.device(name)



def cpu_peak_flops(dtype: str) -> float:
    """Matmul FLOP/s this CPU reaches in `dtype`: the MFU denominator. Measured once, cached."""
    key = f"{platform.processor() or platform.machine()}|{torch.__version__}|{torch.get_num_threads()}|{dtype}"
    path = cache_dir() / "cpu_peak.json"
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        return cached[key]
    n, tdtype = 1024, torch.bfloat16 if dtype == "bfloat16" else torch.float32
    gen = torch.Generator().manual_seed(0)  # its own: the global RNG (dropout) must not see the probe
    a, b = (torch.randn(n, n, generator=gen).to(tdtype) for _ in range(2))
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(4):
            a @ b
        best = max(best, 4 * 2 * n**3 / (time.perf_counter() - t0))
    cached[key] = best
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, cached)
    except OSError:
        pass  # an unwritable cache only costs the probe again next time
    return best


def peak_flops(device: torch.device, dtype: str) -> float | None:
    if device.type == "cpu":
        return cpu_peak_flops(dtype)
    if device.type == "cuda":
        return peak_for_device_name(torch.cuda.get_device_name(device))
    return None


def device_memory_total(device: torch.device, world: int) -> float | None:
    """Memory one process may use: the GPU's, or this host's RAM shared by its processes."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    if device.type == "cpu":
        return psutil.virtual_memory().total / int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return None


def device_memory(device: torch.device) -> tuple[int | None, int | None]:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device), torch.cuda.max_memory_allocated(device)
    if device.type == "mps":
        return torch.mps.current_allocated_memory(), None
    return None, None
