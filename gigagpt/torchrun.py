"""torchrun for `--nproc N`, quiet about a worker that has said why it stopped: a rank's refusal
(a config error, no checkpoint that loads) is its one line and its exit status, not torchrun's
banner and failure report with a traceback. LOGLEVEL=INFO (or WARNING) brings torchrun's logs back."""
from __future__ import annotations

import logging
import os
import signal
import sys


def main() -> int:
    os.environ.setdefault("LOGLEVEL", "CRITICAL")  # torch's elastic loggers take their level from it
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    for name in [n for n in logging.root.manager.loggerDict if n.startswith("torch.distributed")]:
        logging.getLogger(name).setLevel(os.environ["LOGLEVEL"])
    try:
        run(parse_args(sys.argv[1:]))
    except ChildFailedError as e:
        failures = sorted((f.local_rank, f.exitcode) for f in e.failures.values())
        code = next((c for _, c in failures if c > 0), None)
        if code is not None:
            return code  # the rank printed why
        rank, died = failures[0]
        name = signal.Signals(-died).name if -died in signal.Signals._value2member_map_ else f"exit {died}"
        print(f"gigagpt: error: process {rank} of the job died ({name})", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
