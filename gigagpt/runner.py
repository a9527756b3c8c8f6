"""The queue runner (`gigagpt queue run`): starts a runs root's queued runs in order as slots free
up, each as `gigagpt resume RUN` in its own session (so it outlives the runner, the dashboard and
the shell), one per device, pinned with CUDA_VISIBLE_DEVICES. One runner per root (a lock). No torch.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from gigagpt.store.files import RunError, open_append, os_reason
from gigagpt.store.layout import checkpoints
from gigagpt.store.meta import printable, read_meta
from gigagpt.store.queue import (
    RUNNER_LOCK,
    RUNNER_LOG,
    RunnerLock,
    did_not_start,
    queued_runs,
    record_event,
    runner_state,
    write_runner_state,
)
from gigagpt.store.summary import run_status

POLL_SECONDS = 1.0


def gpu_ids() -> list[str]:
    """This machine's GPUs without importing torch: CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "-1"]
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {printable(msg)}", flush=True)


def start_run(run_dir: Path, device: str | None, retry: bool) -> subprocess.Popen:
    """`gigagpt resume RUN` (a queued run starts at step 0) with its output in the run's train.log.
    A retried run that crashed before its first checkpoint starts over."""
    env = dict(os.environ)
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    scratch = ["--from-scratch"] if retry and not checkpoints(run_dir) else []
    with open_append(run_dir / "train.log") as out:
        return subprocess.Popen([sys.executable, "-m", "gigagpt", "resume", str(run_dir), *scratch], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def run_queue(root: Path, slots: int, devices: list[str], follow: bool, retries: int) -> int:
    """The runner's loop, in this process. Returns when the queue is empty and nothing it started
    still runs (never with follow), or on SIGTERM/SIGINT (runs it started keep running)."""
    lock = RunnerLock(root).acquire()
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum))
    free = list(devices) if devices else [None] * slots
    running: dict[str, tuple[subprocess.Popen, str | None, Path]] = {}
    attempts: dict[str, int] = {}
    retry_next: list[Path] = []
    log(f"queue runner {os.getpid()} on {root}: {slots} slot(s)"
        f"{', devices ' + ','.join(devices) if devices else ''}{', follow' if follow else ''}, retries {retries}")

    def state(queued: int) -> None:
        try:
            write_runner_state(root, {"pid": os.getpid(), "slots": slots, "devices": devices, "follow": follow,
                                      "retries": retries, "running": sorted(running), "queued": queued,
                                      "started": started_at})
        except OSError as e:
            log(f"state file not written ({os_reason(e)})")

    def ended(run_id: str, run_dir: Path, code: int) -> None:
        status = run_status(run_dir)
        log(f"{run_id}: {status} (exit {code})")
        if status == "queued":  # the trainer refused before starting: a config or data error
            did_not_start(run_dir, f"did not start (exit {code}): {last_line(run_dir / 'train.log')}")
        elif status == "crashed" and attempts.get(run_id, 0) < retries:  # not `failed`: that is the run's own end
            attempts[run_id] = attempts.get(run_id, 0) + 1
            step = read_meta(run_dir).step or 0
            record_event(run_dir, {"kind": "event", "event": "retry", "step": step, "attempt": attempts[run_id],
                                   "retries": retries, "exit": code, "time": time.time()})
            retry_next.append(run_dir)

    started_at = time.time()
    while not stop:
        if not lock.still_linked():  # the root (or its lock file) was removed: a new runner may own it now
            log(f"{RUNNER_LOCK} is gone from {root}: runner exits; started runs keep running")
            break
        for run_id, (proc, device, run_dir) in list(running.items()):
            code = proc.poll()
            if code is None:
                continue
            del running[run_id]
            free.append(device)
            try:
                ended(run_id, run_dir, code)
            except (OSError, RunError) as e:  # one run's damaged directory never stops the queue
                log(f"{run_id}: {os_reason(e) if isinstance(e, OSError) else e}")
        queue = [p for p, _ in queued_runs(root) if p.name not in running]
        while free and (retry_next or queue):
            run_dir = retry_next.pop(0) if retry_next else queue.pop(0)
            device = free.pop(0)
            try:
                running[run_dir.name] = (start_run(run_dir, device, run_dir.name in attempts), device, run_dir)
            except (OSError, RunError) as e:
                free.append(device)
                log(f"{run_dir.name}: not started ({os_reason(e) if isinstance(e, OSError) else e})")
                if isinstance(e, OSError):
                    did_not_start(run_dir, f"not started by the queue runner ({os_reason(e)})")
                continue
            log(f"{run_dir.name}: started{f' on device {device}' if device is not None else ''}"
                f"{f' (retry {attempts[run_dir.name]} of {retries})' if run_dir.name in attempts else ''}")
        state(len(queue))
        if not running and not queue and not retry_next and not follow:
            break
        time.sleep(POLL_SECONDS)
    log("queue empty: runner exits" if not stop else f"signal {stop[0]}: runner exits; started runs keep running")
    lock.release()
    return 0


def detach(root: Path, argv: list[str]) -> int:
    """Start `gigagpt queue run --foreground ...` in its own session, its output in the root's
    runner log, and say so; refused here when a runner already holds the root."""
    if runner_state(root) is not None:
        RunnerLock(root).acquire().release()  # raises the one line naming the runner
    try:
        root.mkdir(parents=True, exist_ok=True)
        out = open_append(root / RUNNER_LOG)
    except OSError as e:
        raise RunError(f"runs root {root}: cannot start a queue runner there ({os_reason(e)})") from None
    with out:
        proc = subprocess.Popen([sys.executable, "-m", "gigagpt", "queue", "run", "--foreground", *argv],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    time.sleep(0.5)  # a refusal (another runner won the race) shows at once
    if proc.poll() not in (None, 0):
        raise RunError(f"queue runner exited at once: {last_line(root / RUNNER_LOG)}")
    print(f"queue runner started (pid {proc.pid}); its log: {root / RUNNER_LOG}")
    return 0
