"""`gigagpt data prepare`: turn a corpus into the dataset the trainer reads.

A dataset is a directory with train.bin and val.bin (np.uint16 GPT-2 tokens, the end-of-text token
after every document) and meta.json. Memory stays bounded whatever the corpus size: text is read
in blocks of BLOCK characters, tokenized in batches with at most 4 x workers batches in flight, and
appended to a file; the split and the checksums then stream through the files in blocks.
The bound: 4 x workers batches of at most ~3 x BLOCK characters, their tokens and a helper's copy
in flight: about 2 MiB a worker for English text, several times that for text of 3- and 4-byte
characters (a text without any line or word break is held up to 16 x BLOCK before it is cut
anyway), plus the longest line of a .jsonl. Measured (RSS summed over the processes, sampled
every 5 ms): 107 MiB at the peak with 2 workers for a 10 MB text, 115 MiB for a 100 MB one.
The steps: gigagpt/corpus.py reads the source, gigagpt/encode_workers.py tokenizes it, this module
splits, checks and writes the dataset; gigagpt/data_cli.py is the command line.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from gigagpt.corpus import BLOCK, OPENWEBTEXT_SPLIT, DataError, Source, default_name, open_source
from gigagpt.dataset import resolve_dataset
from gigagpt.encode_workers import Progress, start_helpers, tokenize_to
from gigagpt.settings import data_root
from gigagpt.store.files import os_reason
from gigagpt.store.lock import abandoned, hold
from gigagpt.tokenizer import EOT, VOCAB_SIZE, get_tokenizer

DATASET_FILES = ("meta.json", "train.bin", "val.bin")


def split_tail(all_path: Path, train_path: Path, val_path: Path, val_fraction: float):
    """val.bin gets the documents that start in the last val_fraction of the tokens (the tail,
    as nanoGPT splits Shakespeare); if none does, the cut falls inside the document and
    train.bin's part of it gets its own end-of-text token."""
    tokens = np.memmap(all_path, dtype=np.uint16, mode="r")
    n = len(tokens)
    target = min(max(n - max(1, round(n * val_fraction)), 1), n - 1)
    cut = None
    for start in range(target - 1, n - 1, BLOCK):  # the first end-of-text at or after target-1
        hits = np.flatnonzero(tokens[start:min(start + BLOCK, n - 1)] == EOT)
        if len(hits):
            cut = start + int(hits[0]) + 1
            break
    inside = cut is None
    cut = target if inside else cut
    with open(val_path, "wb") as out:
        for start in range(cut, n, BLOCK):
            out.write(tokens[start:min(start + BLOCK, n)].tobytes())
    del tokens  # release the map before truncating the file under it
    with open(all_path, "r+b") as f:
        f.truncate(2 * cut)
        if inside:
            f.seek(0, os.SEEK_END)
            f.write(np.array([EOT], dtype=np.uint16).tobytes())
    os.replace(all_path, train_path)


def bin_stats(path: Path) -> tuple[int, int, str]:
    """Tokens, documents (end-of-text tokens) and sha256 of a .bin, read in blocks."""
    h, tokens, docs = hashlib.sha256(), 0, 0
    with open(path, "rb") as f:
        for raw in iter(lambda: f.read(2 * BLOCK), b""):
            h.update(raw)
            block = np.frombuffer(raw, dtype=np.uint16)
            tokens += len(block)
            docs += int(np.count_nonzero(block == EOT))
    return tokens, docs, h.hexdigest()


def check_out(out: Path, force: bool):
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    if any((out / f).exists() for f in DATASET_FILES):
        if not force:
            raise DataError(f"{out}: already holds a dataset; pass --force to replace it")
    elif any(out.iterdir()):
        raise DataError(f"{out}: a directory that holds files but no dataset; refusing to "
                        "replace it, choose another --out")


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def remove_killed_leftovers(out: Path) -> None:
    """Remove the temporary directories of killed prepares to `out` (openwebtext's is many GB): those
    that store.lock.abandoned says are left over (never a live prepare's: write_dataset holds its own)."""
    for left in out.parent.glob(f".{glob.escape(out.name)}.tmp-*"):
        if abandoned(left, left.name.rpartition("-")[2]):
            shutil.rmtree(left, ignore_errors=True)


def write_dataset(out: Path, source: Source, pool, workers: int, val_fraction: float,
                  counts: dict) -> dict:
    """Tokenize the source into a temporary directory beside out, then rename it to out (a
    dataset is either complete or not there); returns meta.json's content."""
    started = time.monotonic()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run that had our pid
    remove_killed_leftovers(out)
    tmp.mkdir(parents=True)
    held = hold(tmp)  # a prepare in another pid namespace sharing this directory must not take it for a leftover
    try:
        progress = Progress(source.size)
        try:
            if source.splits:
                for split, docs in source.splits.items():
                    tokenize_to(docs, tmp / f"{split}.bin", pool, workers, progress)
            elif tokenize_to(source.docs, tmp / "all.bin", pool, workers, progress) == 0:
                raise DataError(f"{source.describe}: empty corpus: it holds no text")
            else:
                split_tail(tmp / "all.bin", tmp / "train.bin", tmp / "val.bin", val_fraction)
        finally:
            progress.close()
        stats = {s: bin_stats(tmp / f"{s}.bin") for s in ("train", "val")}
        meta = {
            "tokenizer": "gpt2",
            "vocab_size": VOCAB_SIZE,
            "eot": EOT,
            "dtype": "uint16",
            "tokens": {s: stats[s][0] for s in stats},
            "documents": {s: stats[s][1] for s in stats},
            "source": source.describe,
            "val_fraction": val_fraction,
            "replaced_bytes": counts["replaced_bytes"],
            "skipped_lines": counts["skipped_lines"],
            "sha256": {f"{s}.bin": stats[s][2] for s in stats},
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(time.monotonic() - started, 2),
            "workers": workers,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if out.exists():  # --force: swap in the new dataset, then remove the old one
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if held is not None:
            os.close(held)
    return meta


def prepare(spec: str, out=None, val_fraction=None, workers=None, text_field="text",
            skip_bad=False, force=False) -> tuple[Path, dict]:
    """Tokenize SOURCE into a dataset directory; returns its path and meta.json's content."""
    if val_fraction is not None and not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction {val_fraction}: must be between 0 and 1 (exclusive)")
    if val_fraction is None:
        val_fraction = OPENWEBTEXT_SPLIT["test_size"] if spec == "openwebtext" else 0.1
    workers = default_workers() if workers is None else workers
    most = max(8, 4 * default_workers())  # each helper is a process: 100000 of them take the machine down
    if not 1 <= workers <= most:
        raise DataError(f"--workers {workers}: must be at least 1" if workers < 1 else
                        f"--workers {workers}: must be at most {most} (4 x this machine's {default_workers()} cores)")
    out = resolve_dataset(out) if out else data_root() / default_name(spec)
    check_out(out, force)
    counts = {"replaced_bytes": 0, "skipped_lines": 0}
    source = open_source(spec, text_field, skip_bad, val_fraction, workers, counts)
    get_tokenizer()  # fail before any work; forked helpers inherit it
    pool = start_helpers(workers)
    try:
        meta = write_dataset(out, source, pool, workers, val_fraction, counts)
    except OSError as e:  # a full disk, a source file gone unreadable: one line, the temporary directory removed
        raise DataError(f"{out}: dataset not written ({os_reason(e)}{f': {e.filename}' if e.filename else ''})") from None
    except BrokenProcessPool:
        raise DataError("a tokenizing process died (out of memory? killed?); nothing was "
                        "written; try again, or with fewer --workers") from None
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    if counts["replaced_bytes"]:
        warn(f"replaced {counts['replaced_bytes']} bytes that are not UTF-8 with U+FFFD "
             f"(first in {counts['replaced_first']})")
    if counts["skipped_lines"]:
        warn(f"skipped {counts['skipped_lines']} bad lines (first: {counts['skipped_first']})")
    return out, meta


def warn(msg: str):
    print(f"gigagpt: warning: {msg}", file=sys.stderr)
