"""The GPT-2 tokenizer: fetched from the package index in the openai-whisper sdist, checked, and
exact."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gigagpt import tokenizer
from gigagpt.tokenizer import RANKS_SHA256, TokenizerError, get_tokenizer

REPO = Path(__file__).resolve().parent.parent


def gigagpt(*args, env_extra, timeout=120):
    # the tree under test, whatever an installed gigagpt points at
    env = dict(os.environ, PYTHONPATH=str(REPO), **env_extra)
    return subprocess.run([sys.executable, "-m", "gigagpt", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh cache filled by the real `gigagpt data fetch-tokenizer` (from pip's index)."""
    cache = tmp_path_factory.mktemp("cache")
    r = gigagpt("data", "fetch-tokenizer", env_extra={"GIGAGPT_CACHE": str(cache)})
    assert r.returncode == 0, r.stderr
    assert "GPT-2 tokenizer ready" in r.stdout
    return cache


@pytest.fixture
def enc(cache, monkeypatch):
    monkeypatch.setenv("GIGAGPT_CACHE", str(cache))
    return get_tokenizer()


def test_fetch_stores_the_checked_ranks_file_and_the_sdist(cache):
    assert tokenizer.sha256_file(cache / "gpt2.tiktoken") == RANKS_SHA256
    assert (cache / "openai_whisper-20250625.tar.gz").is_file()  # a second fetch needs no index
    assert not [p.name for p in cache.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_known_ids(enc):
    assert enc.encode_ordinary("Hello world") == [15496, 995]
    assert enc.eot_token == 50256
    assert enc.n_vocab == 50257
    assert enc.encode("<|endoftext|>", allowed_special="all") == [50256]
    # as plain text the marker is ordinary tokens, never the end-of-text id
    assert 50256 not in enc.encode_ordinary("<|endoftext|>")


def test_unicode_round_trip(enc):
    text = ("naïve café – 東京 🙂👍🏽 Ελληνικά עברית العربية\u0301 \x00\t\r\n  "
            "e\u0301 ﬁ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 'll 've 're 123 4.5e6 <|endoftext|>")
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_corrupt_ranks_file_is_refused_with_the_fix(cache, tmp_path, monkeypatch):
    bad = tmp_path / "gpt2.tiktoken"
    data = (cache / "gpt2.tiktoken").read_bytes()
    bad.write_bytes(data[:1000] + b"X" + data[1001:])  # one byte changed
    monkeypatch.setenv("GIGAGPT_CACHE", str(tmp_path))
    with pytest.raises(TokenizerError, match="fetch-tokenizer") as e:
        get_tokenizer()
    assert str(bad) in str(e.value) and "sha256" in str(e.value)
    # the command line says the same in one line, exit status 2
    (tmp_path / "a.txt").write_text("some text\n")
    r = gigagpt("data", "prepare", str(tmp_path / "a.txt"), "--out", str(tmp_path / "d"),
                env_extra={"GIGAGPT_CACHE": str(tmp_path)})
    assert r.returncode == 2
    assert r.stderr.startswith("gigagpt: error: ") and "fetch-tokenizer" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "d").exists()


def test_no_tokenizer_offline_fails_fast_with_the_fix(tmp_path):
    """No cached ranks file, tiktoken's cache empty and its download refused."""
    (tmp_path / "a.txt").write_text("some text\n")
    start = time.monotonic()
    r = gigagpt("data", "prepare", str(tmp_path / "a.txt"), "--out", str(tmp_path / "d"),
                env_extra={"GIGAGPT_CACHE": str(tmp_path / "cache"),
                           "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken"),
                           "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    assert time.monotonic() - start < 20
    assert r.returncode == 2, r.stderr
    assert "gigagpt data fetch-tokenizer" in r.stderr and "Traceback" not in r.stderr


def test_sdist_with_wrong_checksum_is_refused(cache, monkeypatch):
    """A real download from pip's index whose sha256 does not match is refused and not kept."""
    from gigagpt.sdist import DownloadError, sdist_bytes
    monkeypatch.setenv("GIGAGPT_CACHE", str(cache / "other"))
    spec, filename, _ = tokenizer.WHISPER_SDIST
    with pytest.raises(DownloadError, match="refused"):
        sdist_bytes(spec, filename, "0" * 64)
    assert not (cache / "other").exists()


def test_unreachable_index_says_so(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = gigagpt("data", "fetch-tokenizer",
                env_extra={"GIGAGPT_CACHE": str(tmp_path / "cache"), "PIP_CONFIG_FILE": os.devnull,
                           "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(empty)})
    assert r.returncode == 2
    assert "openai-whisper==20250625: cannot download openai_whisper-20250625.tar.gz" in r.stderr
    assert not (tmp_path / "cache" / "gpt2.tiktoken").exists()
