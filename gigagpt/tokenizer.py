"""GPT-2 BPE through tiktoken, with an offline path.

tiktoken downloads GPT-2's vocabulary from the open internet. Machines that reach only a package
index get the identical ranks file from the openai-whisper source distribution on PyPI instead
(`gigagpt data fetch-tokenizer`).
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import tarfile
import threading
from pathlib import Path

import tiktoken
import tiktoken.load

from gigagpt.sdist import DownloadError, sdist_bytes
from gigagpt.settings import cache_dir

EOT = 50256
VOCAB_SIZE = 50257
# GPT-2's pre-tokenizer, as tiktoken spells it for its own "gpt2" encoding.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
RANKS_FILE = "gpt2.tiktoken"
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
WHISPER_SDIST = ("openai-whisper==20250625", "openai_whisper-20250625.tar.gz",
                 "37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96")
WHISPER_RANKS_MEMBER = "openai_whisper-20250625/whisper/assets/gpt2.tiktoken"
# The same vocabulary in Hugging Face's files (vocab.json, merges.txt), for export-hf: the last
# openai-whisper release that shipped them.
HF_SDIST = ("openai-whisper==20230124", "openai-whisper-20230124.tar.gz",
            "31adf9353bf0e3f891b6618896f22c65cf78cd6f845a4d5b7125aa5102187f79")
HF_MEMBERS = {"vocab.json": "3ba3c3109ff33976c4bd966589c11ee14fcaa1f4c9e5e154c2ed7f99d80709e7",
              "merges.txt": "fe36cab26d4f4421ed725e10a2e9ddb7f799449c603a96e7f29b5a3c82a95862"}
HF_MEMBER_DIR = "openai-whisper-20230124/whisper/assets/gpt2/"
# tiktoken's download has no timeout: where the network drops packets it would hang for minutes.
TIKTOKEN_WAIT_S = 30
FIX = "run `gigagpt data fetch-tokenizer` (it needs only a package index)"


class TokenizerError(Exception):
    """The GPT-2 tokenizer cannot load; the message says how to fix it."""


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ranks_path() -> Path:
    return cache_dir() / RANKS_FILE


def get_tokenizer() -> tiktoken.Encoding:
    """GPT-2's encoding: from the cached ranks file when there is one, else tiktoken's own."""
    path = ranks_path()
    if path.is_file():  # identical to tiktoken's gpt2, and never touches the network
        return _from_ranks_file(str(path))
    return _tiktoken_gpt2(path)


@functools.cache
def _from_ranks_file(path: str) -> tiktoken.Encoding:
    digest = sha256_file(path)
    if digest != RANKS_SHA256:
        raise TokenizerError(
            f"{path}: sha256 {digest} is not GPT-2's ranks file ({RANKS_SHA256}): the file is "
            f"corrupt or something else; delete it and {FIX}"
        )
    ranks = tiktoken.load.load_tiktoken_bpe(path)
    return tiktoken.Encoding(name="gpt2", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": EOT})


def _tiktoken_gpt2(cached: Path) -> tiktoken.Encoding:
    result = {}

    def load():
        try:
            result["enc"] = tiktoken.get_encoding("gpt2")
        except Exception as e:  # noqa: BLE001 - any failure means: use the offline path
            result["error"] = type(e).__name__  # its text is a long URL-laden chain

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(TIKTOKEN_WAIT_S)
    if "enc" in result:
        return result["enc"]
    why = result.get("error", f"no answer in {TIKTOKEN_WAIT_S} s")
    raise TokenizerError(
        f"cannot load the GPT-2 tokenizer: tiktoken could not download it ({why}) and "
        f"there is no cached {cached}; {FIX}"
    )


def fetch_tokenizer() -> Path:
    """Store GPT-2's ranks file in the cache, from the openai-whisper sdist; returns its path."""
    dest = ranks_path()
    if dest.is_file() and sha256_file(dest) == RANKS_SHA256:
        return dest
    try:
        sdist = sdist_bytes(*WHISPER_SDIST)  # its sha256 checked before tarfile reads it
    except DownloadError as e:
        raise TokenizerError(str(e)) from None
    with tarfile.open(fileobj=io.BytesIO(sdist)) as tar:  # read in memory, nothing extracted
        data = tar.extractfile(WHISPER_RANKS_MEMBER).read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != RANKS_SHA256:
        raise TokenizerError(f"{WHISPER_SDIST[1]}: {WHISPER_RANKS_MEMBER} has sha256 {digest}, "
                             f"expected {RANKS_SHA256}: refusing it")
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, dest)  # atomic: readers see the old file or the whole new one
    _from_ranks_file.cache_clear()
    return dest


def hf_tokenizer_files() -> dict[str, bytes]:
    """GPT-2's vocab.json and merges.txt (Hugging Face's tokenizer files), from the pinned
    openai-whisper sdist (cached once checked), each checked against its own sha256."""
    try:
        sdist = sdist_bytes(*HF_SDIST)  # its sha256 checked before tarfile reads it
    except DownloadError as e:
        raise TokenizerError(str(e)) from None
    out = {}
    with tarfile.open(fileobj=io.BytesIO(sdist)) as tar:  # read in memory, nothing extracted
        for name, sha256 in HF_MEMBERS.items():
            data = tar.extractfile(HF_MEMBER_DIR + name).read()
            if hashlib.sha256(data).hexdigest() != sha256:
                raise TokenizerError(f"{HF_SDIST[1]}: {HF_MEMBER_DIR}{name} is not GPT-2's (sha256 {sha256} expected)")
            out[name] = data
    return out
