"""The device a run trains on: picking it, its memory, and its peak FLOP/s (the MFU denominator)."""
from __future__ import annotations

import ctypes
import json
import math
import os
import platform
import time

import psutil
import torch

from gigagpt.config import ConfigError
from gigagpt.plan import peak_for_device_name
from gigagpt.settings import cache_dir
from gigagpt.store.files import read_regular, write_json


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (torch sees none)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: no Apple MPS device is available")
    return torch.device(name)


# glibc's mallopt parameters (malloc.h), and the values its dynamic thresholds settle at once a
# process has freed a block of 32 MiB: blocks above 32 MiB are mapped fresh, smaller ones reused.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
GLIBC_SETTLED = {M_MMAP_MAX: 65536, M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 64 << 20}
HEAP_ONLY = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: (1 << 31) - 1}


def reuse_freed_memory(on: bool = True) -> bool:
    """Keep freed CPU memory for reuse instead of handing it back (glibc's mallopt). glibc maps
    every block over 32 MiB fresh and unmaps it when freed, so a step's large buffers (one chunk of
    nano's logits is 51 MB) pay page faults and zeroing every time: ~10% of a nano CPU step here.
    For compiled steps, which allocate the same blocks in the same order every step: eager ones
    fragment the heap (nano's eager plain-loss step peaked 1.2 GiB higher). RSS stays at its peak.
    on=False restores glibc's settled behaviour (for benchmarks that switch). False where the C
    library is not glibc (macOS, musl)."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # not a POSIX system, or no GNU libc
        libc = ""
    if not libc.startswith("glibc"):
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return all(mallopt(param, value) == 1 for param, value in (HEAP_ONLY if on else GLIBC_SETTLED).items())


# The CPU peak is measured (best of several 2048 x 2048 matmuls) and cached in <cache>/cpu_peak.json,
# one entry per dtype: {"flops", "measured_at", "machine"}. An entry older than PEAK_MAX_AGE_S, or
# measured on another machine state (machine_state), or not well-formed, is measured again.
PEAK_N, PEAK_REPEATS, PEAK_MAX_AGE_S = 2048, 5, 7 * 86400
PEAK_REPROBE_S = 600  # a run above a figure measured this recently raises it without probing again
PEAK_DTYPES = ("bfloat16", "float32")


def _read_line(path: str, prefix: str = "") -> str | None:
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith(prefix):
                    return line[len(prefix):].strip(" \t\n:") or None
    except OSError:
        pass
    return None


def machine_state() -> dict:
    """What a measured CPU peak depends on, cheap to read: a change means measuring again."""
    state = {"cpu": _read_line("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
             "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__}
    if hasattr(os, "sched_getaffinity"):
        state["usable_cores"] = len(os.sched_getaffinity(0))
    governor = _read_line("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor:
        state["governor"] = governor
    return state


def probe_matmul_flops(dtype: str, n: int = PEAK_N, repeats: int = PEAK_REPEATS) -> float:
    """The best FLOP/s of `repeats` n x n matmuls in `dtype`, after one warm-up."""
    tdtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    gen = torch.Generator().manual_seed(0)  # its own: the global RNG (dropout) must not see the probe
    a, b = (torch.randn(n, n, generator=gen).to(tdtype) for _ in range(2))
    out = torch.mm(a, b)  # warm-up: the allocator and the kernel choice
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = max(best, 2 * n**3 / max(time.perf_counter() - t0, 1e-9))
    return best


def _trusted(entry, state: dict, now: float) -> float | None:
    """A cache entry's FLOP/s when it is well-formed, fresh and of this machine state; else None."""
    if type(entry) is not dict or entry.get("machine") != state:
        return None
    flops, at = entry.get("flops"), entry.get("measured_at")
    try:  # a 400-digit integer is valid JSON and overflows a float
        if not all(type(v) in (int, float) and math.isfinite(v) for v in (flops, at)):
            return None
    except OverflowError:
        return None
    return float(flops) if 0 < flops < 1e18 and now - PEAK_MAX_AGE_S <= at <= now + 60 else None


def cpu_peak_flops(dtype: str, exceeded: float | None = None) -> float:
    """Matmul FLOP/s this CPU reaches in `dtype`: the MFU denominator. The cached figure when it is
    trusted; else (or when a run `exceeded` it: its achieved FLOP/s) measured again, at least
    `exceeded`, and cached. The cache file is untrusted input: anything wrong in it means a probe.
    A figure measured or raised in the last PEAK_REPROBE_S is raised to `exceeded` without a probe
    (a run that keeps beating it is not slowed by a probe at every train line)."""
    path, state, now = cache_dir() / "cpu_peak.json", machine_state(), time.time()
    try:
        cached = json.loads(read_regular(path, 1 << 20))
    except (OSError, ValueError, RecursionError):
        cached = {}
    cached = cached if type(cached) is dict else {}
    flops = _trusted(cached.get(dtype), state, now)
    if flops is not None and exceeded is None:
        return flops
    measured_at = now
    if flops is not None and now - cached[dtype]["measured_at"] < PEAK_REPROBE_S:
        flops = max(flops, exceeded)  # measured moments ago: the run's own figure is the better one
        measured_at = cached[dtype]["measured_at"]  # a raise is no probe: the next one comes when due
    else:
        flops = max(probe_matmul_flops(dtype), exceeded or 0.0)
    keep = {k: cached[k] for k in PEAK_DTYPES if k != dtype and _trusted(cached.get(k), state, now) is not None}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {**keep, dtype: {"flops": flops, "measured_at": measured_at, "machine": state}})
    except OSError:
        pass  # an unwritable cache only costs the probe again next time
    return flops


def peak_info(device: torch.device, dtype: str) -> tuple[float | None, str | None, str]:
    """(peak FLOP/s of one device, where it comes from, its dtype): the MFU denominator. CPU:
    measured (cpu_peak_flops); CUDA: plan.DEVICE_PEAKS' dense bf16 figure; else unknown."""
    if device.type == "cpu":
        return cpu_peak_flops(dtype), "measured", dtype
    if device.type == "cuda":
        return peak_for_device_name(torch.cuda.get_device_name(device)), "device table", "bfloat16"
    return None, None, dtype


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
