"""The dashboard's quality bars (issue 4), measured on this machine.

    python bench/dash.py [--lines 1000000] [--follow-seconds 20]

(a) process start to first painted frame, headless (device probe on, as `gigagpt dash` runs);
(b) CPU use of the dashboard following a run that writes 20 metric lines/s, at the default
    1 Hz refresh (target < 5% of one core);
(c) opening a run whose metrics.jsonl has --lines lines (target < 2 s) and taking in 1,000 new
    lines (target < 50 ms), each including the redraw of the live screen. The run is opened once
    the dashboard has listed its root (its first, cold listing scans the file once: it is timed too).
"""
import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from app.main import DashApp  # noqa: E402
from app.widgets import LossChart  # noqa: E402
from gigagpt.store.files import write_json  # noqa: E402
from gigagpt.store.meta import read_meta  # noqa: E402

TRAIN = ('{"kind":"train","step":%d,"loss":%.6f,"lr":0.0006,"grad_norm":0.9,"tokens":%d,"tok_s":%.1f,'
         '"mfu":0.31,"step_time":0.05,"rss":1234567890,"mem_alloc":null,"mem_peak":null,"time":%.3f}\n')
EVAL = '{"kind":"eval","step":%d,"val_loss":%.6f,"time":%.3f}\n'


def metric_lines(first: int, n: int, t0: float) -> list[str]:
    out = []
    for step in range(first, first + n):
        out.append(TRAIN % (step, 3 + 8 / step ** 0.5, step * 4096, 80000 + step % 97, t0 + step * 0.05))
        if step % 100 == 0:
            out.append(EVAL % (step, 3.1 + 8 / step ** 0.5, t0 + step * 0.05))
    return out


def make_run(root: Path, run_id: str, pid: int, max_steps: int) -> Path:
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    now = time.time()
    write_json(run_dir / "meta.json", {
        "id": run_id, "name": run_id, "preset": "bench", "status": "running", "pid": pid,
        "host": socket.gethostname(), "device": "cpu", "step": 0, "max_steps": max_steps,
        "created": now, "updated": now, "heartbeat": now, "failure": None})
    (run_dir / "train.log").write_text("")
    return run_dir


# ---------------------------------------------------------------------------- (a)

FIRST_FRAME = """
import sys, time
from pathlib import Path
from app.main import DashApp

class Bench(DashApp):
    def on_ready(self):
        print("first-frame", flush=True)
        self.exit()

Bench(Path(sys.argv[1])).run(headless=True, size=(100, 30))
"""


def first_frame(root: Path, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", FIRST_FRAME, str(root)], stdout=subprocess.PIPE,
                                text=True, cwd=REPO)
        for line in proc.stdout:
            if "first-frame" in line:
                times.append(time.perf_counter() - t0)
                break
        proc.wait()
    return statistics.median(times)


# ---------------------------------------------------------------------------- (b)

WRITER = """
import sys, time, json
sys.path.insert(0, sys.argv[3])
from bench.dash import metric_lines
run_dir, rate = sys.argv[1], int(sys.argv[2])
step, t0 = 1, time.time()
with open(run_dir + "/metrics.jsonl", "a") as m, open(run_dir + "/train.log", "a") as log:
    while True:
        for line in metric_lines(step, rate, t0):
            m.write(line)
            m.flush()
            log.write(f"step {step} | loss 3.0\\n")
            log.flush()
            step += 1
            time.sleep(1 / rate)
"""

FOLLOWER = """
import sys, time
from pathlib import Path
from app.main import DashApp

warm, seconds = float(sys.argv[3]), float(sys.argv[4])

class Bench(DashApp):
    def on_ready(self):
        self.set_timer(warm, self.start)

    def start(self):
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        self.set_timer(seconds, self.finish)

    def finish(self):
        cpu = time.process_time() - self.cpu0
        print(f"cpu {cpu / (time.perf_counter() - self.wall0)}", flush=True)
        self.exit()

size = tuple(map(int, sys.argv[5].split("x")))
Bench(Path(sys.argv[1]), probe=False, open_run=sys.argv[2]).run(headless=True, size=size)
"""


def follow_cpu(root: Path, seconds: float, size: str, rate: int = 20) -> float:
    run_id = f"follow-{size}"
    run_dir = make_run(root, run_id, os.getpid(), 10**9)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir), str(rate), str(REPO)], cwd=REPO)
    write_json(run_dir / "meta.json", {**read_meta(run_dir).raw, "pid": writer.pid})
    try:
        out = subprocess.run([sys.executable, "-c", FOLLOWER, str(root), run_id, "3", str(seconds), size],
                             capture_output=True, text=True, cwd=REPO, timeout=seconds + 60)
    finally:
        writer.kill()
        writer.wait()
    line = next((x for x in out.stdout.splitlines() if x.startswith("cpu ")), None)
    if line is None:
        raise SystemExit(f"follower failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return float(line.split()[1])


# ---------------------------------------------------------------------------- (c)

async def open_big_run(root: Path, lines: int) -> dict:
    run_dir = make_run(root, "big", os.getpid(), lines * 2)
    t0 = time.time() - lines * 0.05
    with open(run_dir / "metrics.jsonl", "w") as f:
        for start in range(1, lines + 1, 100_000):
            f.writelines(metric_lines(start, min(100_000, lines + 1 - start), t0))
    size = (run_dir / "metrics.jsonl").stat().st_size
    out = {"size": size}
    painted = []  # when the loss chart was first drawn with data
    render = LossChart.render

    def timed_render(chart):
        text = render(chart)
        if chart.points and not painted:
            painted.append(time.perf_counter())
        return text

    LossChart.render = timed_render
    app = DashApp(root, probe=False, refresh=3600)  # the bench drives the reads itself
    async with app.run_test(size=(200, 60)) as pilot:
        listing = time.perf_counter()
        while not app.tracker.listed:  # the first listing scans the big file once (then it is cached)
            await pilot.pause(0.01)
        out["first_listing"] = time.perf_counter() - listing
        start = time.perf_counter()
        app.open_run("big")
        live = app.screen
        out["shown_at_open"] = len(live.tail.series.train)
        while not painted:
            await pilot.pause(0.01)
        out["open"] = painted[0] - start
        while live.tail.history_end:
            await pilot.pause(0.01)
        await pilot.pause()
        out["history"] = time.perf_counter() - start
        out["rows"] = len(live.tail.series.train)
        reads, redraws = [], []
        step = lines + 1
        for _ in range(5):
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.writelines(metric_lines(step, 1000, t0))
            step += 1000
            start = time.perf_counter()
            live.tail.poll()
            reads.append(time.perf_counter() - start)
            start = time.perf_counter()
            live.charts_changed()
            await pilot.pause()
            redraws.append(time.perf_counter() - start)
        out["read_1000"], out["redraw"] = statistics.median(reads), statistics.median(redraws)
    LossChart.render = render
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--follow-seconds", type=float, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        root.mkdir()
        print(f"(a) start to first frame, headless: {first_frame(root):.2f} s (median of 5)")
        for size in ("100x30", "200x60"):
            cpu = follow_cpu(root, args.follow_seconds, size)
            print(f"(b) CPU following 20 lines/s at 1 Hz, {size}: {100 * cpu:.1f}% of one core "
                  f"(over {args.follow_seconds:g} s; target < 5%)")
        big = asyncio.run(open_big_run(root, args.lines))
        print(f"(c) open a run with {args.lines:,} lines ({big['size'] / 2**20:.0f} MiB): "
              f"{big['open']:.2f} s to the live screen showing its last {big['shown_at_open']:,} lines "
              f"(target < 2 s); whole history loaded behind it after {big['history']:.1f} s "
              f"({big['rows']:,} rows); opened after the dashboard's first listing of the root, a cold "
              f"scan of that file: {big['first_listing']:.1f} s, once")
        print(f"    take in 1,000 new lines: {1000 * big['read_1000']:.0f} ms (median of 5; target < 50 ms); "
              f"then one redraw of the live screen at 200x60: {1000 * big['redraw']:.0f} ms")


if __name__ == "__main__":
    main()
