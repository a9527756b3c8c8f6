"""Runs' metrics out to other tools: long-form CSV and TensorBoard event files. Streams each
metrics.jsonl (metrics.Reader): memory stays bounded whatever the file's size."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from gigagpt.store.curves import read_config_text
from gigagpt.store.files import RunError
from gigagpt.store.layout import run_labels
from gigagpt.store.meta import printable
from gigagpt.store.metrics import Reader


class ExportError(RunError):
    pass


def check_target(out, run_dirs: list[Path]) -> None:
    """RunError when an export's output (a CSV file or a TensorBoard directory) is inside one of
    the runs it reads, or holds one: an export never writes into a run directory."""
    target = os.path.realpath(out)
    for d in run_dirs:
        real = os.path.realpath(d)
        if target == real or target.startswith(real + os.sep) or real.startswith(target + os.sep):
            raise ExportError(f"{printable(str(out))}: inside run {printable(Path(d).name)} (or holding it); "
                              "write the export elsewhere")


def metric_rows(run_dir: Path):
    """(step, kind, metric, value, time) for every number of every kept train and eval line."""
    for rec in Reader(Path(run_dir) / "metrics.jsonl"):
        kind = rec["kind"]
        if kind not in ("train", "eval"):
            continue
        for key, value in rec.items():
            if key in ("kind", "step") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            yield rec["step"], kind, key, value, rec.get("time")


def export_csv(run_dirs: list[Path], out) -> int:
    """Long form: run, step, kind, metric, value (one row per number). Returns the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["run", "step", "kind", "metric", "value"])
    n = 0
    for run_dir, label in zip(run_dirs, run_labels(run_dirs)):
        for step, kind, key, value, _ in metric_rows(run_dir):
            writer.writerow([label, step, kind, key, repr(value) if isinstance(value, float) else value])
            n += 1
    return n


def export_tensorboard(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """One event directory per run, `<out_dir>/<label>/` (run_labels): scalars `train/loss`,
    `eval/val_loss`... at their step and wall time, and the config as text. Needs tensorboardX."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ExportError("--tensorboard needs tensorboardX: pip install 'gigagpt[tensorboard]' "
                          "(or pip install tensorboardX)") from None
    written = []
    for run_dir, label in zip(run_dirs, run_labels(run_dirs)):
        target = Path(out_dir) / label
        with SummaryWriter(logdir=str(target)) as writer:
            for step, kind, key, value, wall in metric_rows(run_dir):
                if key != "time":
                    writer.add_scalar(f"{kind}/{key}", value, global_step=step, walltime=wall)
            config = read_config_text(run_dir)
            if config is not None:
                writer.add_text("config", "```\n" + config + "\n```", global_step=0)
        written.append(target)
    return written
