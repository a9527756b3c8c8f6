"""Our default CPU training step on `nano` vs a plain eager fp32 step of the same model.

The baseline is what a nanoGPT user gets on a CPU: fp32, eager, the default AdamW. Ours is the
nano preset as `gigagpt train` runs it: bf16 autocast, torch.compile, fused AdamW. Both are
timed in this one process, interleaved, on the same batches, so machine noise hits both alike.

    .venv/bin/python bench/train_step.py [--steps 6] [--rounds 3]
"""
import argparse
import time
from pathlib import Path

import torch

from gigagpt.config import load_config
from gigagpt.model import GPT
from gigagpt.plan import flops_per_token
from gigagpt.train import autocast_for, cpu_peak_flops, make_optimizer

REPO = Path(__file__).resolve().parent.parent


def make_step(cfg, ours: bool):
    torch.manual_seed(0)
    model = GPT(cfg.model)
    if ours:
        opt = make_optimizer(model, cfg.train, torch.device("cpu"))
        run = torch.compile(model) if cfg.train.compile else model
        ctx = autocast_for(torch.device("cpu"), cfg.train.dtype)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, betas=(0.9, 0.95))
        run, ctx = model, autocast_for(torch.device("cpu"), "float32")
    params = list(model.parameters())

    def step(x, y):
        with ctx:
            loss = run(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cfg = load_config(REPO / "configs" / "nano.toml", check_data=False)
    B, T = cfg.train.batch_size, cfg.model.block_size
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 50257, (B, T), generator=gen), torch.randint(0, 50257, (B, T), generator=gen))
               for _ in range(args.steps)]
    steps = {"eager fp32 (baseline)": make_step(cfg, False), "gigagpt default": make_step(cfg, True)}
    t0 = time.perf_counter()
    for step in steps.values():  # warm-up: compilation and allocator
        for x, y in batches[:3]:
            step(x, y)
    print(f"warm-up (includes torch.compile): {time.perf_counter() - t0:.1f} s")
    best = {name: float("inf") for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for x, y in batches:
                step(x, y)
            best[name] = min(best[name], (time.perf_counter() - t0) / args.steps)
    fpt = flops_per_token(cfg.model)
    print(f"nano: {B}x{T} tokens/step, {fpt / 1e6:.1f} MFLOP/token, {torch.get_num_threads()} threads")
    for name, dtype in (("eager fp32 (baseline)", "float32"), ("gigagpt default", cfg.train.dtype)):
        tok_s = B * T / best[name]
        peak = cpu_peak_flops(dtype)
        print(f"{name:24s} {1000 * best[name]:7.0f} ms/step {tok_s:8,.0f} tok/s  "
              f"MFU {100 * fpt * tok_s / peak:5.1f}% of measured {dtype} matmul peak {peak / 1e9:,.0f} GFLOP/s")
    ratio = best["eager fp32 (baseline)"] / best["gigagpt default"]
    print(f"speed-up: {ratio:.2f}x (target >= 1.8x)")


if __name__ == "__main__":
    main()
