"""A run file that could not be written (a full disk, an I/O error, a read-only remount): the
trainer ends the run `failed` with one line naming the file and the OS's reason, never a traceback."""
from __future__ import annotations

from contextlib import contextmanager

from gigagpt.store.files import os_reason


class WriteFailed(Exception):
    """A run file could not be written: the run ends `failed` with this line."""

    def __init__(self, what: str, err: OSError):
        code = f"[Errno {err.errno}] " if err.errno else ""
        super().__init__(f"cannot write {what}: {code}{os_reason(err)}")


def os_error_in(exc: BaseException) -> OSError | None:
    """The OSError behind an exception, if any. torch.save reports a failed write as a RuntimeError
    ('unexpected pos'); a sharded save wraps each rank's error."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):
            return exc
        failures = getattr(exc, "failures", None)  # a CheckpointException: {rank: (exception, traceback)}
        if isinstance(failures, dict):
            for failure in failures.values():
                found = os_error_in(failure[0] if isinstance(failure, tuple) and failure else None)
                if found:
                    return found
        exc = exc.__cause__ or exc.__context__
    return None


@contextmanager
def writing(what: str, recorder: ErrorRecorder | None = None):
    """Turn a failed write inside into WriteFailed naming `what` (a path in the run directory)."""
    try:
        yield
    except WriteFailed:
        raise
    except BaseException as e:
        err = (recorder.error if recorder else None) or os_error_in(e)
        if err is None or isinstance(e, KeyboardInterrupt):
            raise
        raise WriteFailed(what, err) from None


class ErrorRecorder:
    """A file object that remembers the OSError of a failed write, which a serializer may swallow."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self):
        self.f.flush()
