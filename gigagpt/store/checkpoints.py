"""A run's checkpoints as the trainers keep them: the newest `keep_checkpoints`, and for a resume
the newest one that loads, with the ones that do not set aside (docs/run-format.md, "Checkpoints").
Torch-free: loading a checkpoint is the trainer's own `load` callable."""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from gigagpt.store.failed import writing
from gigagpt.store.files import RunError, os_reason
from gigagpt.store.layout import checkpoints, entries


class Unloadable(RunError):
    """A checkpoint that cannot be read (truncated, corrupt, refused by a safe loader)."""


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (a .dcp is a directory); WriteFailed if one
    cannot be deleted."""
    for old in checkpoints(run_dir)[:-keep]:
        with writing(f"checkpoints/{old.name} (deleting it)"):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()


def newest_loadable(run_dir: Path, load) -> tuple[Path | None, object, list[tuple[Path, str]]]:
    """(checkpoint, its state, skipped) for the newest checkpoint that `load` accepts; `load`
    raises Unloadable for a damaged one (skipped: (path, why)) and RunError for one this trainer
    must not use at all (that stops the search). (None, None, skipped) when none loads."""
    skipped = []
    for path in reversed(checkpoints(run_dir)):
        try:
            why = not_files(path)
            if why:
                raise Unloadable(why)
            return path, load(path), skipped
        except Unloadable as e:
            skipped.append((path, str(e)))
    return None, None, skipped


def not_files(path: Path) -> str | None:
    """Why a checkpoint is not plain files a loader may open, or None: a FIFO would block the
    open for ever, a directory, a device or a symlink loop would fail inside the loader. A .dcp
    is a directory of files."""
    names = entries(path) if path.suffix == ".dcp" else [""]
    if names is None:
        return "unreadable (not a directory)"
    for name in names:
        try:
            if not stat.S_ISREG(os.stat(path / name if name else path).st_mode):
                return f"unreadable ({name or path.name} is not a regular file)"
        except (OSError, ValueError) as e:
            return f"unreadable ({os_reason(e) if isinstance(e, OSError) else e})"
    return None


def no_checkpoint(run_dir: Path, skipped: list[tuple[Path, str]]) -> RunError:
    """The refusal of a resume with nothing to resume from."""
    why = "; ".join(f"{p.name}: {r}" for p, r in skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
    what = f"no checkpoint loads ({why})" if skipped else "has no checkpoint to resume from"
    return RunError(f"run {run_dir}: {what}; `gigagpt resume {run_dir} --from-scratch` starts it over at step 0")


def set_aside(paths: list[Path]) -> list[Path]:
    """Rename checkpoints that did not load to `<name>.skipped` (`-2`, ... when taken): kept for a
    look, no longer checkpoints, so they neither count against keep_checkpoints nor shadow the
    newer ones the resumed run writes. Returns the new paths; WriteFailed if one cannot be renamed."""
    moved = []
    for path in paths:
        target, i = path.with_name(path.name + ".skipped"), 1
        while os.path.lexists(target):
            i += 1
            target = path.with_name(f"{path.name}.skipped-{i}")
        with writing(f"checkpoints/{path.name} (renaming it to {target.name})"):
            os.replace(path, target)
        moved.append(target)
    return moved
