"""Planned peak training memory (gigagpt.plan) against the measured peak, on this CPU.

Each measurement runs in a fresh process: import torch and gigagpt, note the RSS, then build the
model and optimizer and train a few steps on random tokens exactly as the trainer does; the
measured training memory is the peak RSS (ru_maxrss) minus that starting RSS.

    .venv/bin/python bench/plan_memory.py [--presets tiny nano] [--steps 3]
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLAIN = "plain-loss"  # a variant's flag (not a config key): model.fused_loss = False

CHILD = r"""
import json, resource, sys, psutil, torch
from gigagpt.config import load_config, apply_overrides
from gigagpt.device import reuse_freed_memory
from gigagpt.model import build_model
from gigagpt.train import autocast_for, make_optimizer
plain = "plain-loss" in sys.argv[3:]  # bench's PLAIN
cfg = apply_overrides(load_config(sys.argv[1], check_data=False), [o for o in sys.argv[3:] if o != "plain-loss"])
if cfg.train.compile:
    reuse_freed_memory()  # as the trainer does on a CPU
steps = int(sys.argv[2])
x = torch.randint(0, cfg.model.vocab_size, (cfg.train.batch_size, cfg.model.block_size))
base = psutil.Process().memory_info().rss
torch.manual_seed(0)
model = build_model(cfg.model, torch.device("cpu"))
model.checkpoint_blocks = cfg.train.activation_checkpointing
model.fused_loss = not plain
opt = make_optimizer(model, cfg.train, torch.device("cpu"))
run = torch.compile(model) if cfg.train.compile else model
ctx = autocast_for(torch.device("cpu"), cfg.train.dtype)
params = list(model.parameters())
for _ in range(steps):
    with ctx:
        loss = run(x, x)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"measured": peak - base}))
"""


def measure(preset: str, steps: int, overrides: list[str]) -> int:
    out = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "configs" / f"{preset}.toml"), str(steps),
                          *overrides], capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])["measured"]


def main():
    from gigagpt.config import apply_overrides, load_config
    from gigagpt.plan import human_bytes, memory_estimate

    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="+", default=["tiny", "nano"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="run only the variants whose text contains one of these (e.g. '(preset' plain)")
    args = ap.parse_args()
    variants = [[], [PLAIN], ["train.compile=true"], ["train.compile=false"], [PLAIN, "train.compile=false"],
                ["train.activation_checkpointing=true", "train.compile=false"],
                ["train.dtype=float32", "train.compile=false"], ["train.dtype=float32", "train.compile=true"],
                ["train.batch_size=4", "train.compile=true"]]
    print(f"{'preset':6s} {'variant':44s} {'planned':>10s} {'measured':>10s} {'error':>7s}")
    worst = {"presets as is": 0.0, "all variants": 0.0}
    for preset in args.presets:
        for ov in variants:
            if args.only and not any(o in (" ".join(ov) or "(preset as is)") for o in args.only):
                continue
            cfg = apply_overrides(load_config(REPO / "configs" / f"{preset}.toml", check_data=False),
                                  [o for o in ov if o != PLAIN])
            planned = memory_estimate(cfg, fused_loss=PLAIN not in ov)["total"]
            measured = measure(preset, args.steps, ov)
            err = planned / measured - 1
            for key in worst if not ov else ["all variants"]:
                worst[key] = max(worst[key], abs(err))
            print(f"{preset:6s} {' '.join(ov) or '(preset as is)':44s} {human_bytes(planned):>10s} "
                  f"{human_bytes(measured):>10s} {100 * err:+6.1f}%", flush=True)
    print(f"largest error, presets as is: {100 * worst['presets as is']:.1f}% (target: within 15%); "
          f"over all variants: {100 * worst['all variants']:.1f}%")


if __name__ == "__main__":
    main()
