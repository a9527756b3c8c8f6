"""Where a nano training step's time goes on this CPU (torch.profiler), plain head + loss vs fused.

Each variant runs the trainer's loop as gigagpt/train.py runs it (freed memory kept for reuse, bf16
autocast, torch.compile, fused AdamW, clipping, the loss read back, a metrics line and the RSS every log_interval steps)
on a synthetic uint16 token file read through gigagpt.batches. The ops are put in rows by name
and shape (inductor's kernels are profiled by name: cpp.enable_kernel_profile), the loop's
phases by record_function. Variants alternate within one process; the profile of each round's
steps is summed, and per-step figures are medians over rounds.

    .venv/bin/python bench/profile_step.py [--steps 5] [--rounds 3]
"""
import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
import torch._inductor.config
from torch.profiler import ProfilerActivity, profile, record_function

from gigagpt.batches import draw_windows, load_windows, open_split
from gigagpt.config import load_config
from gigagpt.device import reuse_freed_memory
from gigagpt.model import build_model
from gigagpt.train import autocast_for, make_optimizer

REPO = Path(__file__).resolve().parent.parent
ROWS = ["head matmuls (50257-wide)", "head + loss: softmax, lse, its gradient", "other matmuls",
        "other elementwise (LayerNorm, GELU, casts)", "embedding backward (+ a fused LayerNorm)", "optimizer step (fused AdamW)",
        "grad clipping", "data (draw, read, check)", "logging (RSS, metrics line)", "rest (Python, autograd)",
        "attention (SDPA forward + backward)"]
LOSS = ("softmax", "nll", "cross_entropy", "logsumexp", "amax", "index_put", "gather", "LinearCrossEntropy", "exp")
MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "mkldnn", "matmul")


def row_of(event, phase: str) -> int:
    name, shapes = event.name, str(event.input_shapes)
    if phase in ("clip", "data", "logging"):
        return {"clip": 6, "data": 7, "logging": 8}[phase]
    if phase == "optimizer":
        return 5
    if "scaled_dot_product" in name:
        return 10
    if any(k in name for k in MATMUL):
        return 0 if "50257" in shapes else 2
    if "embedding_dense_backward" in name:  # inductor fuses a LayerNorm's backward into it
        return 4
    if any(k in name for k in LOSS) or phase == "head":
        return 1
    if name.startswith("aten::") or "cpp_fused" in name:
        return 3
    return 9


def phase_of(event) -> str:
    e = event
    while e is not None:
        if e.name in ("clip", "data", "logging"):
            return e.name
        if e.name.startswith("Optimizer.step"):
            return "optimizer"
        if "LinearCrossEntropy" in e.name:
            return "head"
        e = e.cpu_parent
    return ""


def make_loop(cfg, fused: bool, data, log_path: Path):
    torch.manual_seed(0)
    t, m = cfg.train, cfg.model
    model = build_model(m, torch.device("cpu"))
    model.fused_loss = fused
    optimizer = make_optimizer(model, t, torch.device("cpu"))
    run, ctx = torch.compile(model), autocast_for(torch.device("cpu"), t.dtype)
    params, gen, proc, state = list(model.parameters()), torch.Generator().manual_seed(0), psutil.Process(), {"step": 0}

    def step():
        with record_function("data"):
            x, y = load_windows(data, draw_windows(data, cfg, 1, gen)[0], m.block_size, torch.device("cpu"), m.vocab_size)
        with ctx:
            loss = run(x, y)
        loss.backward()
        with record_function("clip"):
            norm = torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        loss_val, norm_val = loss.item(), norm.item()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        if state["step"] % t.log_interval == 0:
            with record_function("logging"), log_path.open("a") as f:
                f.write(json.dumps({"step": state["step"], "loss": loss_val, "grad_norm": norm_val,
                                    "rss": proc.memory_info().rss}) + "\n")

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5, help="profiled steps per variant per round (one log interval)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch._inductor.config.cpp.enable_kernel_profile = True  # inductor's kernels by name in the profile
    reuse_freed_memory()  # as the trainer does on a CPU
    cfg = load_config(REPO / "configs" / "nano.toml", check_data=False)
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)  # Shakespeare's size in tokens; their values do not change the work
    rng.integers(0, cfg.model.vocab_size, 1_420_000, dtype=np.uint16).tofile(tmp / "train.bin")
    data = open_split(tmp, "train")
    loops = {"plain": make_loop(cfg, False, data, tmp / "plain.jsonl"),
             "fused": make_loop(cfg, True, data, tmp / "fused.jsonl")}
    for loop in loops.values():  # compile and warm up, the profiler too (its first start is slow)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True):
            for _ in range(3):
                loop()
    per_step = {k: [[0.0] * len(ROWS) for _ in range(args.rounds)] for k in loops}
    wall = {k: [] for k in loops}
    loads = [os.getloadavg()[0]]
    for r in range(args.rounds):
        for name, loop in loops.items():
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    loop()
                wall[name].append((time.perf_counter() - t0) / args.steps)
            top = {}
            for ev in prof.events():
                row = row_of(ev, phase_of(ev))
                per_step[name][r][row] += ev.self_cpu_time_total / 1000 / args.steps
                top[(row, ev.name[:70])] = top.get((row, ev.name[:70]), 0) + ev.self_cpu_time_total / 1000 / args.steps
            if os.environ.get("PROFILE_TOP"):
                for (row, n), ms in sorted(top.items(), key=lambda kv: -kv[1])[:int(os.environ["PROFILE_TOP"])]:
                    print(f"  {name} row {row} {ms:7.1f} ms  {n}")
        loads.append(os.getloadavg()[0])
    print(f"nano step, bf16 + torch.compile, {args.rounds} rounds x {args.steps} steps per variant, "
          f"{torch.get_num_threads()} threads; 1-min load average {min(loads):.2f}-{max(loads):.2f}")
    print("ms per step (median over rounds; the profiler's own overhead included)\n")
    print(f"| {'where':44s} | {'plain':>8s} | {'fused':>8s} |\n|---|---:|---:|")
    for i in sorted(range(len(ROWS)), key=lambda i: -per_step["plain"][0][i]):
        cells = [statistics.median(per_step[k][r][i] for r in range(args.rounds)) for k in loops]
        print(f"| {ROWS[i]:44s} | " + " | ".join(f"{c:8.0f}" if c >= 10 else f"{c:8.1f}" for c in cells) + " |")
    print(f"| {'step, wall clock':44s} | " + " | ".join(f"{1000 * statistics.median(wall[k]):8.0f}" for k in loops) + " |")


if __name__ == "__main__":
    main()
