"""torchrun for `--nproc N`, quiet about a worker that has said why it stopped: a rank's refusal
(a config error, no checkpoint that loads) is its one line and its exit status, not torchrun's
banner and failure report with a traceback. LOGLEVEL=INFO (or WARNING) brings torchrun's logs back.
A refusal every rank reaches is one line, not one per rank: see say_once."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import sys
import tempfile

SAID_DIR = "GIGAGPT_SAID_DIR"  # set for the ranks: "<launcher pid>:<a directory with a file per line printed>"
SAID_PREFIX = "gigagpt-said-"  # + "<launcher pid>-": the directory's name in the temporary directory


def say_once(line: str, file=None) -> None:
    """An error line on stderr, unless another rank of this node has printed the same line: the
    first rank to create its file prints it. A rank's own error (only rank 1 fails) still shows."""
    launcher, _, said = os.environ.get(SAID_DIR, "").partition(":")
    if said and launcher == str(os.getppid()):  # a rank of this launcher, not a process that inherited it
        name = hashlib.sha256(line.encode("utf-8", "surrogatepass")).hexdigest()
        try:
            os.close(os.open(os.path.join(said, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        except OSError:  # the directory is gone (a rank outlived the launcher): twice rather than never
            pass
    print(line, file=file or sys.stderr, flush=True)


def launch_torchrun(nproc: int, argv: list[str]) -> int:
    """`gigagpt ...` again, as `nproc` processes on this node (torchrun --standalone)."""
    cmd = [sys.executable, "-m", "gigagpt.torchrun", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "gigagpt", *argv]
    print(f"launching {nproc} processes: torchrun --standalone --nproc-per-node={nproc} -m gigagpt "
          f"{' '.join(argv)}", flush=True)
    os.execv(sys.executable, cmd)  # torchrun takes this pid: signals reach it, and it forwards them


def leave_group(code: int) -> int:
    """A rank leaving with its process group still open (a refusal, a failed run) can die in torch's
    C++ teardown and lose its exit status: flush and leave at once, the run's files already closed."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main() -> int:
    code = launch()
    if code and "--run-dir" in sys.argv[:-1]:  # `train --nproc`'s new run directory, refused before a file was written
        try:
            os.rmdir(sys.argv[sys.argv.index("--run-dir") + 1])  # only an empty one: nothing is lost
        except OSError:
            pass
    return code


def remove_stale_said_dirs() -> None:
    """A launcher killed with SIGKILL leaves its directory behind: the next launch removes those
    that store.lock.abandoned says are left over."""
    from gigagpt.store.lock import abandoned

    tmp = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(tmp) if n.startswith(SAID_PREFIX)]
    except OSError:
        return
    for name in names:
        pid, dash, _ = name[len(SAID_PREFIX):].partition("-")
        if dash and abandoned(os.path.join(tmp, name), pid):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


def launch() -> int:
    os.environ.setdefault("LOGLEVEL", "CRITICAL")  # torch's elastic loggers take their level from it
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from gigagpt.store.lock import hold

    for name in [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed")]:
        logging.getLogger(name).setLevel(os.environ["LOGLEVEL"])
    remove_stale_said_dirs()
    try:
        with tempfile.TemporaryDirectory(prefix=f"{SAID_PREFIX}{os.getpid()}-") as said:
            hold(said)  # held while this process lives: no other launch takes it for a leftover
            os.environ[SAID_DIR] = f"{os.getpid()}:{said}"  # the workers inherit this process's environment
            args = parse_args(sys.argv[1:])
            if args.log_dir is None:  # torchrun's own log directory (error files) would stay in /tmp for good
                args.log_dir = os.path.join(said, "torchelastic")
            run(args)
    except ChildFailedError as e:
        failures = sorted((f.local_rank, f.exitcode) for f in e.failures.values())
        code = next((c for _, c in failures if c > 0), None)
        if code is not None:
            return code  # the rank printed why
        rank, died = failures[0]
        name = signal.Signals(-died).name if -died in signal.Signals._value2member_map_ else f"exit {died}"
        print(f"gigagpt: error: process {rank} of the job died ({name})", file=sys.stderr, flush=True)
        return 1
    except SignalException as e:  # SIGTERM/ctrl-c to the launcher: the ranks got it too and stopped as they do
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
