"""On one CUDA GPU: the 124m and 1p3b presets' training step, eager vs torch.compile, as
`gigagpt train` runs it (bf16 autocast, fused AdamW, gradient clipping): tokens/s, MFU against the
device table's peak (plan.DEVICE_PEAKS) and peak memory against the planner (plan.memory_estimate).
Writes gpu.json and gpu.md under --out (default: $OUT, else bench-gpu/). Random tokens: no dataset.
Without CUDA it says so and exits 0, measuring nothing.

    .venv/bin/python bench/gpu.py [--steps 20] [--warmup 5] [--configs 124m:12,1p3b:8] [--out DIR]
"""
import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import torch

from gigagpt.config import load_config
from gigagpt.device import peak_info
from gigagpt.model import build_model
from gigagpt.plan import flops_per_token, human_bytes, memory_estimate
from gigagpt.train import autocast_for, make_optimizer

REPO = Path(__file__).resolve().parent.parent


def measure(name: str, batch: int, compile: bool, steps: int, warmup: int, device) -> dict:
    """One variant: `warmup` untimed steps (compilation), then `steps` timed ones."""
    cfg = load_config(REPO / "configs" / f"{name}.toml", [f"train.batch_size={batch}", "train.grad_accum=1",
                      f"train.compile={str(compile).lower()}"], check_data=False)
    m, t = cfg.model, cfg.train
    row = {"config": name, "compile": compile, "batch": batch, "block_size": m.block_size, "dtype": t.dtype,
           "planned_bytes": memory_estimate(cfg)["total"]}
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    try:
        torch.manual_seed(0)
        model = build_model(m, device)
        model.checkpoint_blocks = t.activation_checkpointing
        opt = make_optimizer(model, t, device)
        run = torch.compile(model) if compile else model
        ctx, params = autocast_for(device, t.dtype), list(model.parameters())
        x, y = (torch.randint(0, m.vocab_size, (batch, m.block_size), device=device) for _ in range(2))
        for i in range(warmup + steps):
            if i == warmup:
                torch.cuda.synchronize(device)
                t0 = time.perf_counter()
            with ctx:
                loss = run(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, t.grad_clip if t.grad_clip > 0 else float("inf"))
            opt.step()
            opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - t0) / steps
    except torch.cuda.OutOfMemoryError as e:
        return {**row, "error": f"out of memory: {str(e).splitlines()[0]}"}
    finally:
        model = opt = run = None  # noqa: F841 (freed before the next variant)
    peak, source, _ = peak_info(device, t.dtype)
    tok_s = batch * m.block_size / seconds
    measured = torch.cuda.max_memory_allocated(device)
    return {**row, "step_ms": 1000 * seconds, "tok_s": tok_s, "final_loss": loss.item(),
            "mfu": flops_per_token(m) * tok_s / peak if peak else None, "peak_flops": peak, "peak_source": source,
            "measured_bytes": measured, "reserved_bytes": torch.cuda.max_memory_reserved(device),
            "planner_error": row["planned_bytes"] / measured - 1}


def table(rows: list[dict], device_name: str) -> str:
    out = [f"{device_name}, torch {torch.__version__}", "",
           "| config | batch x T | compile | ms/step | tok/s | MFU | peak memory (allocated) | planned | planner |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['config']} | {r['batch']} x {r['block_size']} | {'yes' if r['compile'] else 'no'} |"
        if "error" in r:
            out.append(f"{head} {r['error']} | | | | planned {human_bytes(r['planned_bytes'])} | | |")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "–"
        out.append(f"{head} {r['step_ms']:.1f} | {r['tok_s']:,.0f} | {mfu} | {human_bytes(r['measured_bytes'])} | "
                   f"{human_bytes(r['planned_bytes'])} | {100 * r['planner_error']:+.1f}% |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, allocator)")
    ap.add_argument("--configs", default="124m:12,1p3b:8", help="preset:micro-batch, comma-separated")
    ap.add_argument("--out", default=os.environ.get("OUT") or "bench-gpu")
    args = ap.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    if not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device (torch sees none): nothing measured", file=sys.stderr)
        return 0
    device = torch.device("cuda", 0)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # as train.py
    rows = []
    for spec in args.configs.split(","):
        name, batch = spec.split(":")
        for compile in (False, True):
            rows.append(measure(name, int(batch), compile, args.steps, args.warmup, device))
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device)
    (out / "gpu.json").write_text(json.dumps({"device": name, "torch": torch.__version__, "rows": rows}, indent=2))
    (out / "gpu.md").write_text(table(rows, name))
    print(table(rows, name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
