"""End to end on nano: `gigagpt train nano` as a user runs it against nanoGPT's training loop with
bf16 autocast, torch.compile and fused AdamW (bench/nanogpt_train.py, nanoGPT's model from
`--nanogpt DIR`), each a real subprocess on the preset's dataset, on the CPU. `gigagpt train` keeps
freed memory for reuse on a CPU (gigagpt.device.reuse_freed_memory); nanoGPT runs twice, with glibc's
defaults and with that same setting given through GLIBC_TUNABLES ("nanoGPT, our allocator").

Each side runs --long steps and --short steps; the difference of the two wall clocks is the time of
long - short steady-state steps, so process start-up, imports, torch.compile and the work at the
last step cancel out. Within those steps both do the same: the preset's batch x block x grad_accum,
a loss read every step (ours: its guard on CPU; nanoGPT: loss.item() for its log line), and
evaluation (train.eval_steps batches) and a checkpoint on gigagpt's schedule, which for nano at
<= 50 steps means once, after the last step, on both sides (eval_interval 50, checkpoint_interval
100). Ours also writes a metrics line every log_interval (5) steps. Both get train.max_steps = N
and train.warmup_steps = min(the preset's, --short) (the preset's 40 is more than a short run).

First --warmup unmeasured runs of each side (inductor's on-disk cache, the cached CPU peak, the page
cache), then --rounds rounds: short then long, the two sides back to back, their order swapped
every round. Figures are medians [min-max] over rounds, ratios taken within a round. Peak RSS is
os.wait4's ru_maxrss of the long runs: the largest process of the run's tree (compile workers
included). Runs go into a temporary directory, each removed once timed. Without --nanogpt it says
how to get nanoGPT and measures `gigagpt train` alone. --set changes both sides' config (shape,
batch, schedule, dataset); the baseline is bf16 + compile whatever train.dtype and train.compile say
(nano's are the same).

    .venv/bin/python bench/end_to_end.py --nanogpt DIR [--short 8] [--long 24] [--rounds 3] [--warmup 1]
                                         [--config nano] [--set KEY=VALUE ...]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nanogpt_train import nanogpt_dir
from train_step import spread

from gigagpt.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent
OURS, BASE, BASE_HEAP = "gigagpt train", "nanoGPT bf16+compile", "nanoGPT, our allocator"
# gigagpt.device.reuse_freed_memory's setting, as an expert would give it to nanoGPT: no code change
TUNABLES = "GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647"


def timed(cmd: list[str], log: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of cmd run to completion; on failure, its output's end."""
    with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        print(f"{' '.join(cmd)}: exit {proc.returncode}; its output ends:\n{log.read_text()[-3000:]}", file=sys.stderr)
        raise SystemExit(1)
    return wall, usage.ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nanogpt", help="a nanoGPT checkout (git clone https://github.com/karpathy/nanoGPT)")
    ap.add_argument("--config", default="nano", help="a preset in configs/")
    ap.add_argument("--short", type=int, default=8)
    ap.add_argument("--long", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured short runs of each side first")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config overrides for both sides (the baseline stays bf16 + compile)")
    args = ap.parse_args()
    if not (0 < args.short < args.long and args.rounds > 0 and args.warmup >= 0):
        print(f"--short {args.short}, --long {args.long}, --rounds {args.rounds}, --warmup {args.warmup}: "
              "need 0 < short < long, rounds >= 1, warmup >= 0", file=sys.stderr)
        raise SystemExit(2)
    nano = nanogpt_dir(args.nanogpt)
    try:  # a missing dataset is one line, before anything runs
        cfg = load_config(REPO / "configs" / f"{args.config}.toml", args.set)
    except ConfigError as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None
    t = cfg.train
    step_tokens = t.batch_size * cfg.model.block_size * t.grad_accum

    def settings(n):
        sets = [*args.set, f"train.max_steps={n}", f"train.warmup_steps={min(t.warmup_steps, args.short)}"]
        return [x for kv in sets for x in ("--set", kv)]

    commands = {OURS: lambda n, d: [sys.executable, "-m", "gigagpt", "train", args.config, "--device", "cpu",
                                    "--run-dir", str(d / "run"), *settings(n)]}
    if nano:
        commands[BASE] = lambda n, d: [sys.executable, "bench/nanogpt_train.py", "--nanogpt", str(nano),
                                       "--out", str(d / "out"), "--config", args.config, *settings(n)]
        commands[BASE_HEAP] = lambda n, d: ["env", TUNABLES, *commands[BASE](n, d)]
    names = list(commands)
    walls = {name: {args.short: [], args.long: []} for name in names}
    rss = {name: [] for name in names}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="gigagpt-e2e-") as tmp:
        def run(name, n, tag):
            d = Path(tmp) / f"{tag}-{names.index(name)}-{n}"
            d.mkdir()
            result = timed(commands[name](n, d), d / "output.txt")
            shutil.rmtree(d)
            return result

        for name in names:
            for _ in range(args.warmup):
                print(f"warm-up, {name}, {args.short} steps: {run(name, args.short, 'warmup')[0]:.1f} s", flush=True)
        for r in range(args.rounds):
            for n in (args.short, args.long):
                for name in (names if r % 2 == 0 else names[::-1]):
                    wall, peak = run(name, n, f"round{r}")
                    walls[name][n].append(wall)
                    if n == args.long:
                        rss[name].append(peak)
            loads.append(os.getloadavg()[0])
            line = [f"{name} {(args.long - args.short) * step_tokens / (w[args.long][r] - w[args.short][r]):,.0f} tok/s "
                    f"({args.long} steps {w[args.long][r]:.1f} s, {args.short} steps {w[args.short][r]:.1f} s)"
                    for name, w in walls.items()]
            print(f"round {r + 1}: " + "; ".join(line), flush=True)

    tok_s = {name: [(args.long - args.short) * step_tokens / (wl - ws)
                    for wl, ws in zip(walls[name][args.long], walls[name][args.short])] for name in names}
    print(f"{args.config}: {t.batch_size} x {cfg.model.block_size} x {t.grad_accum} tokens/step, {args.long} - "
          f"{args.short} steps, {args.rounds} rounds; 1-min load average {min(loads):.2f}-{max(loads):.2f}")
    if any(s <= 0 for v in tok_s.values() for s in v):
        print(f"some long runs were not slower than the short ones: {args.long} - {args.short} steps is too few for "
              "this machine's noise")
    print("median [min-max] over rounds; fixed cost: start-up, compile, the last step's eval + checkpoint")
    for name in names:
        fixed = [ws - args.short * step_tokens / s for ws, s in zip(walls[name][args.short], tok_s[name])]
        print(f"{name:22s} {spread(tok_s[name])} tok/s  fixed cost {spread(fixed, fmt='{:.1f}')} s  "
              f"peak RSS {spread(rss[name], 1 / 2**20)} MiB")
    for base in names[1:]:
        print(f"{OURS} vs {base}: {spread([a / b for a, b in zip(tok_s[OURS], tok_s[base])], fmt='{:.2f}')}x "
              "the tokens/s (same round)")


if __name__ == "__main__":
    main()
