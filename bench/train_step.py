"""Our default CPU training step on `nano` vs a plain eager fp32 step of the same model, the
fused LM head + loss (gigagpt.fused_loss) against the plain head + F.cross_entropy, and (with
`--nanogpt DIR`) against nanoGPT used by an expert.

The baseline is what a nanoGPT user gets on a CPU: fp32, eager, the default AdamW. Ours is the
nano preset as `gigagpt train` runs it: bf16 autocast, torch.compile, fused AdamW, and the fused
head + loss; "plain loss" is the same with model.fused_loss = False. "nanoGPT bf16+compile" is the
strongest fair baseline: nanoGPT's own GPT/GPTConfig from DIR/model.py (a nanoGPT checkout; none of
its code is in this repository) at nano's shape (vocab 50257, dropout 0, biases as ours), stepped as
its train.py does (forward returns logits and loss, backward, clip_grad_norm_ 1.0, zero_grad(set_to_none=True)) with
what an expert changes for a CPU: bf16 autocast (train.py uses nullcontext there), torch.compile, and
fused AdamW over configure_optimizers' own parameter groups (it fuses only on CUDA; on this CPU the
fused step is ~4.7x faster: bench/nanogpt_train.py says how that was measured). Ours runs as
`gigagpt train` does on a CPU, with gigagpt.device.reuse_freed_memory on; the others with glibc's
settled defaults, ours once more with glibc's ("gigagpt, glibc's allocator": the setting's
own gain), and nanoGPT once more with our allocator setting ("nanoGPT, our allocator"; an
expert could set it too: GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...). All are timed in this one
process, interleaved round by round on the same batches, so machine noise hits them alike; each
figure is the median over rounds with the spread [min-max], ratios taken within a round. MFU is
against the best matmul peak (gigagpt.device's probe) measured in the same rounds.

    .venv/bin/python bench/train_step.py [--steps 6] [--rounds 5] [--nanogpt DIR]
"""
import argparse
import os
import statistics
import time
from pathlib import Path

import torch
from nanogpt_train import build as build_nanogpt
from nanogpt_train import nanogpt_dir

from gigagpt.config import load_config
from gigagpt.device import probe_matmul_flops, reuse_freed_memory
from gigagpt.model import GPT
from gigagpt.plan import flops_per_token
from gigagpt.train import autocast_for, make_optimizer

REPO = Path(__file__).resolve().parent.parent
BASE, PLAIN, OURS = "eager fp32 (baseline)", "gigagpt, plain loss", "gigagpt default (fused)"
NANO, NANO_HEAP = "nanoGPT bf16+compile", "nanoGPT, our allocator"
OURS_GLIBC = "gigagpt, glibc's allocator"


def make_step(cfg, ours: bool, fused: bool = True):
    torch.manual_seed(0)
    model = GPT(cfg.model)
    model.fused_loss = fused
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


def make_nanogpt_step(cfg, path):
    torch.manual_seed(0)
    model, opt = build_nanogpt(path, cfg)
    run, ctx = torch.compile(model), torch.autocast("cpu", dtype=torch.bfloat16)

    def step(x, y):
        with ctx:
            logits, loss = run(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return step


def spread(values, scale=1.0, fmt="{:.0f}"):
    values = [v * scale for v in values]
    return f"{fmt.format(statistics.median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6, help="timed steps per variant per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--nanogpt", help="a nanoGPT checkout (git clone https://github.com/karpathy/nanoGPT)")
    args = ap.parse_args()
    nano = nanogpt_dir(args.nanogpt)
    cfg = load_config(REPO / "configs" / "nano.toml", check_data=False)
    B, T = cfg.train.batch_size, cfg.model.block_size
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, 50257, (B, T), generator=gen), torch.randint(0, 50257, (B, T), generator=gen))
               for _ in range(args.steps)]
    # name: (step, whether it runs with reuse_freed_memory on, as `gigagpt train` does on a CPU)
    ours = make_step(cfg, True)
    steps = {BASE: (make_step(cfg, False, fused=False), False), PLAIN: (make_step(cfg, True, fused=False), True),
             OURS: (ours, True), OURS_GLIBC: (ours, False)}
    if nano:
        nano_step = make_nanogpt_step(cfg, nano)
        steps[NANO], steps[NANO_HEAP] = (nano_step, False), (nano_step, True)
    t0 = time.perf_counter()
    for step, reuse in steps.values():  # warm-up: compilation and allocator
        reuse_freed_memory(reuse)
        for x, y in batches[:3]:
            step(x, y)
    print(f"warm-up (includes torch.compile): {time.perf_counter() - t0:.1f} s")
    times, loads = {name: [] for name in steps}, [os.getloadavg()[0]]
    peaks = {"float32": 0.0, cfg.train.dtype: 0.0}
    for _ in range(args.rounds):
        for dtype in peaks:
            peaks[dtype] = max(peaks[dtype], probe_matmul_flops(dtype))
        for name, (step, reuse) in steps.items():
            reuse_freed_memory(reuse)
            step(*batches[0])  # untimed: the allocator settles into its mode
            t0 = time.perf_counter()
            for x, y in batches:
                step(x, y)
            times[name].append((time.perf_counter() - t0) / args.steps)
        loads.append(os.getloadavg()[0])
    fpt = flops_per_token(cfg.model)
    print(f"nano: {B}x{T} tokens/step, {fpt / 1e6:.1f} MFLOP/token, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.steps} steps; 1-min load average {min(loads):.2f}-{max(loads):.2f}")
    print("ms/step and tok/s: median [min-max] over rounds")
    for name in steps:
        dtype = "float32" if name == BASE else cfg.train.dtype
        peak = peaks[dtype]
        tok_s = [B * T / t for t in times[name]]
        print(f"{name:24s} {spread(times[name], 1000)} ms/step  {spread(tok_s)} tok/s  "
              f"MFU {spread([fpt * s / peak for s in tok_s], 100, '{:.1f}')}% of the {dtype} matmul peak "
              f"measured alongside, {peak / 1e9:,.0f} GFLOP/s")
    pairs = ((BASE, OURS), (PLAIN, OURS), (OURS_GLIBC, OURS), (BASE, PLAIN))
    for a, b in pairs + (((NANO, OURS), (NANO_HEAP, OURS), (NANO, NANO_HEAP)) if nano else ()):
        ratios = [x / y for x, y in zip(times[a], times[b])]
        print(f"{b} vs {a}: {spread(ratios, fmt='{:.2f}')}x faster (same round)")


if __name__ == "__main__":
    main()
