"""The runs screen's quality bars (issue 5), measured on this machine.

    python bench/runs.py [--runs 1000] [--steps 200] [--compare-steps 100000]

(a) listing --runs synthetic run directories (meta.json + a metrics.jsonl of --steps train lines,
    an eval every 50 steps): cold, with no summary cache (target < 1 s), and warm, from the
    cache (target < 0.1 s) — each including the directory scan and the stat of every file;
(b) loading the curves of 8 runs of --compare-steps steps for the compare screen (target < 1 s).
Runs are written directly, no training. The page cache is warm in both (the files were just
written): a cold disk adds its read time.
"""
import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.dash import metric_lines  # noqa: E402
from gigagpt import rundir, runs  # noqa: E402

STATUSES = ("completed", "stopped", "failed", "running")


def make_run(root: Path, run_id: str, steps: int, i: int) -> None:
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    now = time.time()
    t0 = now - 86400 + i
    with open(run_dir / "metrics.jsonl", "w") as f:
        f.writelines(metric_lines(1, steps, t0))
    # "running" with a dead pid on this host: the listing reports it crashed (the pid check runs)
    rundir.write_json(run_dir / "meta.json", {
        "id": run_id, "name": run_id, "preset": "tiny", "status": STATUSES[i % 4], "pid": 999_999_999,
        "host": socket.gethostname(), "device": "cpu", "world_size": 1, "step": steps, "max_steps": steps,
        "created": t0, "updated": t0 + steps * 0.05, "heartbeat": t0 + steps * 0.05, "failure": None,
        "tokens_per_step": 4096, "params": 3_318_592})


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--compare-steps", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        for i in range(args.runs):
            make_run(root, f"run-{i:05d}", args.steps, i)
        size = sum(f.stat().st_size for f in root.glob("*/metrics.jsonl"))
        print(f"{args.runs} runs of {args.steps} steps ({size / 2**20:.0f} MiB of metrics.jsonl)")

        def cold():
            (root / runs.SUMMARY_CACHE).unlink(missing_ok=True)
            return runs.list_runs(root)

        t_cold, rows = timed(cold, args.repeats)
        assert len(rows) == args.runs and rows[0]["loss"] is not None and rows[0]["best_val"] is not None
        runs.list_runs(root)
        t_warm, rows = timed(lambda: runs.list_runs(root), args.repeats * 3)
        cache_kib = (root / runs.SUMMARY_CACHE).stat().st_size / 1024
        print(f"(a) list cold (no cache)  {t_cold * 1000:7.1f} ms   target < 1000 ms")
        print(f"    list warm (cache)     {t_warm * 1000:7.1f} ms   target <  100 ms   "
              f"(cache {cache_kib:.0f} KiB)")

        big = Path(tmp) / "big"
        dirs = []
        for i in range(8):
            make_run(big, f"big-{i}", args.compare_steps, i)
            dirs.append(big / f"big-{i}")
        mib = (dirs[0] / "metrics.jsonl").stat().st_size / 2**20
        # what the compare screen reads first (x = step), and what x = tokens / time add
        t_cmp, curves = timed(lambda: [runs.load_curves(d, ()) for d in dirs], args.repeats)
        assert all(len(c["train"]["step"]) == args.compare_steps for c in curves)
        t_first, _ = timed(lambda: runs.load_curves(dirs[0], ()), args.repeats)
        t_x, _ = timed(lambda: [runs.load_curves(d, ("tokens",)) for d in dirs], 1)
        t_json, _ = timed(lambda: [rundir.read_jsonl(d / "metrics.jsonl") for d in dirs[:2]], 1)
        print(f"(b) compare: curves of 8 runs x {args.compare_steps:,} steps ({mib:.0f} MiB each) "
              f"{t_cmp * 1000:7.1f} ms   target < 1000 ms")
        print(f"    first run's curve (shown as it arrives)   {t_first * 1000:7.1f} ms")
        print(f"    switching x to tokens: 8 runs             {t_x * 1000:7.1f} ms")
        print(f"    (for scale: rundir.read_jsonl, full JSON, {t_json / 2 * 8 * 1000:7.1f} ms for 8)")


if __name__ == "__main__":
    main()
