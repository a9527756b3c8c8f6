"""Tokenizing a corpus's documents on several processes, in order, into a .bin file of np.uint16
GPT-2 tokens with the end-of-text token after every document (gigagpt/prepare.py's middle step)."""
from __future__ import annotations

import multiprocessing
import sys
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from gigagpt.corpus import BLOCK, DataError
from gigagpt.tokenizer import EOT, get_tokenizer


def batches(docs):
    """Lists of about BLOCK characters of text pieces; None marks a document's end."""
    batch, size = [], 0
    for doc in docs:
        has_text = False
        for piece in doc:
            if piece:
                batch.append(piece)
                size += len(piece)
                has_text = True
            if size >= BLOCK:
                yield batch
                batch, size = [], 0
        if has_text:  # an empty document adds nothing, not even an end-of-text token
            batch.append(None)
    if batch:
        yield batch


def encode_batch(batch) -> np.ndarray:
    enc = get_tokenizer()  # cached per process; forked workers inherit the parent's
    eot = np.array([EOT], dtype=np.uint32)
    # encode_to_numpy with no special tokens allowed is encode_ordinary without Python lists
    parts = [eot if p is None else enc.encode_to_numpy(p, disallowed_special=()) for p in batch]
    return np.concatenate(parts).astype(np.uint16)


def start_helpers(workers: int) -> ProcessPoolExecutor | None:
    """The workers - 1 tokenizing helpers, started now rather than at the first batch, so that
    their start (a few ms) overlaps reading it. On Linux they are forked after get_tokenizer()
    and inherit the loaded tokenizer (elsewhere fork is not safe, and each loads its own).
    A helper that dies (out of memory, killed) fails its work with BrokenProcessPool."""
    if workers == 1:
        return None
    fork = sys.platform == "linux"
    pool = ProcessPoolExecutor(workers - 1, mp_context=multiprocessing.get_context(
        "fork" if fork else None), initializer=None if fork else get_tokenizer)
    try:
        pool.submit(int)  # forked helpers all start at the first submit
    except OSError as e:  # a process limit, out of memory
        pool.shutdown(wait=False, cancel_futures=True)
        raise DataError(f"--workers {workers}: cannot start the tokenizing processes ({e}); "
                        "try fewer --workers") from None
    return pool


def chars(batch) -> int:
    return sum(len(piece) for piece in batch if piece)


def encode_ordered(batch_iter, pool: ProcessPoolExecutor | None, workers: int):
    """(characters, tokens) of each batch of batch_iter, in order, encoded on `workers`
    processes: this one, which also reads the text, and the pool's workers - 1 helpers. A batch
    goes to the helpers while they hold fewer than 2 each, else this process encodes it, so no
    core waits on the reading (a reader beside `workers` helpers puts 3 processes on 2 cores:
    1.5x instead of 1.6x, measured).
    At most 4 x workers batches in flight, so that this process can run ahead while a helper on
    a slower core finishes its batch (a VM's cores need not run at one speed)."""
    if pool is None:
        for batch in batch_iter:
            yield chars(batch), encode_batch(batch)
        return

    def done(result):
        return isinstance(result, np.ndarray) or result.done()

    def tokens(result):
        return result if isinstance(result, np.ndarray) else result.result()

    pending = deque()  # (characters, the tokens or the helper's future), in input order
    for batch in batch_iter:
        in_helpers = sum(not done(result) for _, result in pending)
        if in_helpers < 2 * (workers - 1):
            pending.append((chars(batch), pool.submit(encode_batch, batch)))
        else:
            pending.append((chars(batch), encode_batch(batch)))
        while pending and (done(pending[0][1]) or len(pending) >= 4 * workers):
            n, result = pending.popleft()
            yield n, tokens(result)
    while pending:
        n, result = pending.popleft()
        yield n, tokens(result)


class Progress:
    """One line on stderr with tokens/s (and a bar when the input size is known); TTY only."""

    def __init__(self, size: int | None):
        self.size, self.chars, self.tokens = size, 0, 0
        self.start = self.shown = time.monotonic()
        self.tty = sys.stderr.isatty()

    def add(self, chars: int, tokens: int):
        self.chars += chars
        self.tokens += tokens
        now = time.monotonic()
        if self.tty and now - self.shown > 0.2:
            self.shown = now
            rate = self.tokens / max(now - self.start, 1e-9)
            bar = ""
            if self.size:
                done = min(self.chars / self.size, 1.0)
                bar = f"[{'#' * int(30 * done):<30}] {done:4.0%}  "
            sys.stderr.write(f"\r  tokenizing {bar}{self.tokens / 1e6:.2f}M tokens  "
                             f"{rate / 1e6:.2f}M tok/s ")
            sys.stderr.flush()

    def close(self):
        if self.tty and self.shown > self.start:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def tokenize_to(docs, path: Path, pool, workers: int, progress: Progress) -> int:
    n = 0
    with open(path, "wb") as out:
        for n_chars, tokens in encode_ordered(batches(docs), pool, workers):
            out.write(tokens.tobytes())
            n += len(tokens)
            progress.add(n_chars, len(tokens))
    return n
