"""The runs browser's quality bars (issues 5 and 12), measured on this machine, through the run
store (gigagpt/store) as `gigagpt runs` and the dashboard use it.

    python bench/runs.py [--runs 1000] [--steps 200] [--compare-steps 100000] [--big-mb 250]

(a) listing --runs synthetic run directories (meta.json + a metrics.jsonl of --steps train lines,
    an eval every 100 steps): cold, with no summary cache (target < 1 s), and warm, from the
    cache (target < 0.1 s) — each including the directory scan and the stat of every file;
(b) loading the curves of 8 runs of --compare-steps steps for the compare screen (target < 1 s);
(c) peak memory (RSS, in a fresh subprocess: its VmHWM, what getrusage's ru_maxrss gives where it
    does not carry over the parent's peak across exec) of listing a run
    whose metrics.jsonl is --big-mb MB, cold, and of exporting it as CSV (target < 150 MB each).
Runs are written directly, no training. The page cache is warm in all (the files were just
written): a cold disk adds its read time.
"""
import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.dash import metric_lines  # noqa: E402
from gigagpt.store.curves import load_curves  # noqa: E402
from gigagpt.store.files import write_json  # noqa: E402
from gigagpt.store.metrics import load_metrics  # noqa: E402
from gigagpt.store.summary import SUMMARY_CACHE, list_runs  # noqa: E402

STATUSES = ("completed", "stopped", "failed", "running")


def make_run(root: Path, run_id: str, steps: int, i: int) -> Path:
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    now = time.time()
    t0 = now - 86400 + i
    with open(run_dir / "metrics.jsonl", "w") as f:
        for first in range(1, steps + 1, 100_000):
            f.writelines(metric_lines(first, min(100_000, steps + 1 - first), t0))
    # "running" with a dead pid on this host and no lock file: the listing reports it crashed
    write_json(run_dir / "meta.json", {
        "id": run_id, "name": run_id, "preset": "tiny", "status": STATUSES[i % 4], "pid": 999_999_999 % 2**31,
        "host": socket.gethostname(), "device": "cpu", "world_size": 1, "step": steps, "max_steps": steps,
        "created": t0, "updated": t0 + steps * 0.05, "heartbeat": t0 + steps * 0.05, "failure": None,
        "tokens_per_step": 4096, "params": 3_318_592})
    return run_dir


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


# A fresh interpreter per measurement: ru_maxrss is the process's peak, imports included.
PEAK = """
import json, os, resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from gigagpt.store.export import export_csv
from gigagpt.store.summary import list_runs
def rss_mib():
    # VmHWM: this process image's peak. ru_maxrss would do elsewhere, but on Linux it keeps the peak
    # of the process before exec, i.e. of the bench that forked it (~110 MiB here).
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
base = rss_mib()
root = Path(sys.argv[3])
if sys.argv[2] == "list":
    rows = list_runs(root)
    assert rows[0]["loss"] is not None and rows[0]["best_val"] is not None, rows
    what = f"{len(rows)} row(s), step {rows[0]['step']}"
else:
    with open(os.devnull, "w") as out:
        n = export_csv([root / "big"], out)
    what = f"{n:,} CSV rows"
print(json.dumps({"base": base, "peak": rss_mib(), "what": what}))
"""


def peak_rss(mode: str, root: Path) -> dict:
    (root / SUMMARY_CACHE).unlink(missing_ok=True)  # a cold listing reads the whole file
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PEAK, str(REPO), mode, str(root)], capture_output=True,
                          text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["seconds"] = time.perf_counter() - t
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--compare-steps", type=int, default=100_000)
    p.add_argument("--big-mb", type=int, default=250)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        for i in range(args.runs):
            make_run(root, f"run-{i:05d}", args.steps, i)
        size = sum(f.stat().st_size for f in root.glob("*/metrics.jsonl"))
        print(f"{args.runs} runs of {args.steps} steps ({size / 2**20:.0f} MiB of metrics.jsonl)")

        def cold():
            (root / SUMMARY_CACHE).unlink(missing_ok=True)
            return list_runs(root)

        t_cold, rows = timed(cold, args.repeats)
        assert len(rows) == args.runs and rows[0]["loss"] is not None and rows[0]["best_val"] is not None
        list_runs(root)
        t_warm, rows = timed(lambda: list_runs(root), args.repeats * 3)
        cache_kib = (root / SUMMARY_CACHE).stat().st_size / 1024
        print(f"(a) list cold (no cache)  {t_cold * 1000:7.1f} ms   target < 1000 ms")
        print(f"    list warm (cache)     {t_warm * 1000:7.1f} ms   target <  100 ms   "
              f"(cache {cache_kib:.0f} KiB)")

        big = Path(tmp) / "big"
        dirs = [make_run(big, f"big-{i}", args.compare_steps, i) for i in range(8)]
        mib = (dirs[0] / "metrics.jsonl").stat().st_size / 2**20
        # what the compare screen reads first (x = step), and what x = tokens / time add
        t_cmp, curves = timed(lambda: [load_curves(d, ()) for d in dirs], args.repeats)
        assert all(len(c["train"]["step"]) == args.compare_steps for c in curves)
        t_first, _ = timed(lambda: load_curves(dirs[0], ()), args.repeats)
        t_x, _ = timed(lambda: [load_curves(d, ("tokens",)) for d in dirs], 1)
        t_json, _ = timed(lambda: [load_metrics(d) for d in dirs[:2]], 1)
        print(f"(b) compare: curves of 8 runs x {args.compare_steps:,} steps ({mib:.0f} MiB each) "
              f"{t_cmp * 1000:7.1f} ms   target < 1000 ms")
        print(f"    first run's curve (shown as it arrives)   {t_first * 1000:7.1f} ms")
        print(f"    switching x to tokens: 8 runs             {t_x * 1000:7.1f} ms")
        print(f"    (for scale: metrics.load_metrics, every line as JSON, {t_json / 2 * 8 * 1000:7.1f} ms for 8)")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        steps = args.big_mb * 2**20 // 215  # a trainer's train line is ~215 bytes
        run_dir = make_run(root, "big", steps, 0)
        mb = (run_dir / "metrics.jsonl").stat().st_size / 1e6
        for mode, label in (("list", "list it (cold: no summary cache)"), ("export", "export it as CSV")):
            out = peak_rss(mode, root)
            print(f"(c) {mb:.0f} MB metrics.jsonl ({steps:,} steps), {label}: peak RSS {out['peak']:.0f} MiB "
                  f"(interpreter and imports {out['base']:.0f} MiB; {out['what']}; {out['seconds']:.1f} s)   "
                  "target < 150 MB")


if __name__ == "__main__":
    main()
