"""Pinned sdists come from a real local package index (files and an http.server thread), and their
sha256 is checked before anything reads, builds or keeps them (gigagpt/sdist.py)."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from local_index import Index, make_sdist

from gigagpt import sdist
from gigagpt.sdist import DownloadError, PipIndexes, sdist_bytes
from gigagpt.tokenizer import WHISPER_SDIST

REPO = Path(__file__).resolve().parent.parent
WHISPER_FILE = WHISPER_SDIST[1]


def only_index(url: str) -> dict:
    """The environment under which pip (and so gigagpt) uses url as its one package index."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return dict(env, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=url, PYTHONPATH=str(REPO))


def fetch_tokenizer(cache: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gigagpt", "data", "fetch-tokenizer"],
                          capture_output=True, text=True, timeout=120,
                          env=dict(env, GIGAGPT_CACHE=str(cache)))


def nothing_in(cache: Path) -> bool:
    return not cache.exists() or not any(cache.iterdir())


@pytest.fixture
def tampered(tmp_path):
    """A local index serving a tampered openai_whisper-20250625.tar.gz (right name, a fake
    ranks file, a setup.py and a build backend that write `marker` when run)."""
    marker = tmp_path / "marker"
    top = WHISPER_FILE.removesuffix(".tar.gz")
    path = tmp_path / "made" / WHISPER_FILE
    path.parent.mkdir()
    make_sdist(path, top, marker, {"whisper/assets/gpt2.tiktoken": b"aGk= 0\n"})
    index = Index(tmp_path / "index")
    index.add("openai-whisper", path)
    return index, path, marker


def test_a_tampered_sdist_from_the_index_is_refused_before_it_runs(tampered, tmp_path):
    """`gigagpt data fetch-tokenizer` downloads it, refuses it for its sha256 in one line (exit
    2), and nothing of it runs or stays; pip download, on the same index, runs its code."""
    index, _, marker = tampered
    cache = tmp_path / "cache"
    with index.serve() as url:
        r = fetch_tokenizer(cache, only_index(url))
        assert r.returncode == 2, r.stderr
        assert f"/files/{WHISPER_FILE}" in index.requests  # it was fetched, then refused
        err = r.stderr.strip()
        assert err.count("\n") == 0 and err.startswith("gigagpt: error: openai-whisper==20250625")
        assert "sha256" in err and "refused" in err and url.rsplit("/", 1)[0] in err
        assert not marker.exists() and nothing_in(cache)
        # the control: what `pip download --no-binary :all:` did with the same file
        pip = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                              ":all:", WHISPER_SDIST[0], "-d", str(tmp_path / "pip")],
                             capture_output=True, text=True, timeout=120, env=only_index(url))
    assert marker.exists(), pip.stderr  # the tampered backend ran before any check could


def test_a_tampered_cached_sdist_is_removed_before_it_is_read(tampered, tmp_path):
    """A cached file under the pinned name but with another sha256: removed with one warning,
    never opened as a tarball (its ranks member is not stored), never run."""
    _, path, marker = tampered
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / WHISPER_FILE).write_bytes(path.read_bytes())
    empty = tmp_path / "empty"
    empty.mkdir()
    r = fetch_tokenizer(cache, only_index(empty.as_uri()))
    assert r.returncode == 2
    warning, error = r.stderr.strip().splitlines()
    assert warning.startswith(f"gigagpt: warning: {cache / WHISPER_FILE}: this cached download "
                              "is damaged") and "removed it" in warning
    assert error.startswith("gigagpt: error: openai-whisper==20250625: cannot download")
    assert not marker.exists() and nothing_in(cache)


@pytest.fixture
def genuine(tmp_path):
    """A small sdist standing in for a pinned one: (requirement, filename, sha256), its path."""
    path = tmp_path / "made" / "tiny_pkg-1.0.tar.gz"
    path.parent.mkdir()
    sha = make_sdist(path, "tiny_pkg-1.0", tmp_path / "marker", {"data.txt": "hello\n"})
    return ("Tiny.Pkg==1.0", path.name, sha), path


def kept(cache: Path, name: str) -> bytes:
    assert sorted(p.name for p in cache.iterdir()) == [name]  # no temporary file left
    return (cache / name).read_bytes()


def test_the_pinned_file_from_a_file_index_is_returned_and_cached(genuine, tmp_path,
                                                                monkeypatch):
    pinned, path = genuine
    index = Index(tmp_path / "index")
    index.add("tiny-pkg", path)  # PEP 503's normal form of Tiny.Pkg
    monkeypatch.setenv("GIGAGPT_CACHE", str(tmp_path / "cache"))
    assert sdist_bytes(*pinned, PipIndexes([index.url])) == path.read_bytes()
    assert kept(tmp_path / "cache", path.name) == path.read_bytes()
    # a second call needs no index: the cached copy, checked
    assert sdist_bytes(*pinned, PipIndexes([])) == path.read_bytes()
    assert not (tmp_path / "marker").exists()


def test_find_links_directory_and_the_first_index_that_has_it(genuine, tmp_path, monkeypatch):
    pinned, path = genuine
    monkeypatch.setenv("GIGAGPT_CACHE", str(tmp_path / "cache"))
    missing = (tmp_path / "nowhere").as_uri()
    got = sdist_bytes(*pinned, PipIndexes([missing], [str(path.parent)]))
    assert got == path.read_bytes() and kept(tmp_path / "cache", path.name) == got


@pytest.mark.parametrize("as_json", [False, True])
def test_an_http_index_behind_basic_auth_html_or_json(genuine, tmp_path, monkeypatch, as_json):
    """PEP 503 HTML and PEP 691 JSON pages; credentials written into the index URL are sent
    and never shown."""
    pinned, path = genuine
    index = Index(tmp_path / "index")
    index.add("tiny-pkg", path)
    monkeypatch.setenv("GIGAGPT_CACHE", str(tmp_path / "cache"))
    with index.serve(as_json=as_json, auth=("user", "s3cret")) as url:
        with pytest.raises(DownloadError, match="HTTP 401") as e:
            sdist_bytes(*pinned, PipIndexes([url.replace("//", "//user:wr0ng@")]))
        assert sdist_bytes(*pinned, PipIndexes([url.replace("//", "//user:s3cret@")])) == \
            path.read_bytes()
    assert "wr0ng" not in str(e.value) and url in str(e.value)
    assert index.requests[-1] == f"/files/{path.name}"


def test_wrong_sha256_too_large_and_local_links_are_refused(genuine, tmp_path, monkeypatch):
    pinned, path = genuine
    cache = tmp_path / "cache"
    monkeypatch.setenv("GIGAGPT_CACHE", str(cache))
    index = Index(tmp_path / "index")
    index.add("tiny-pkg", path)
    with pytest.raises(DownloadError, match=f"has sha256 {pinned[2]}, expected 0000"):
        sdist_bytes(pinned[0], pinned[1], "0" * 64, PipIndexes([index.url]))
    monkeypatch.setattr(sdist, "MAX_BYTES", 100)
    with pytest.raises(DownloadError, match="larger than"):
        sdist_bytes(*pinned, PipIndexes([index.url]))
    monkeypatch.undo()
    monkeypatch.setenv("GIGAGPT_CACHE", str(cache))
    # an http page may not point at this machine's files
    index.add("tiny-pkg", path, href=path.as_uri())
    with index.serve() as url, pytest.raises(DownloadError, match="links to a local file"):
        sdist_bytes(*pinned, PipIndexes([url]))
    assert nothing_in(cache)


def test_pip_settings_as_pip_download_reads_them(tmp_path, monkeypatch):
    """[download] over [global], PIP_* over both; no-index drops every index URL."""
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = https://a.example/simple\n"
                    "extra-index-url = https://b.example/simple\n  file:///c/simple\n"
                    "find-links = /d\ncert = /e.pem\ntimeout = 7\n"
                    "[download]\nindex-url = https://f.example/simple\n"
                    "[install]\nindex-url = https://not-for-download.example/simple\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    got = sdist.pip_indexes()
    assert got.index_urls == ["https://f.example/simple", "https://b.example/simple",
                              "file:///c/simple"]
    assert (got.find_links, got.cert, got.timeout) == (["/d"], "/e.pem", 7.0)
    monkeypatch.setenv("PIP_FIND_LINKS", "/g /h")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    got = sdist.pip_indexes()
    assert (got.index_urls, got.find_links) == ([], ["/g", "/h"])
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_NO_INDEX")
    assert sdist.pip_indexes().index_urls == [sdist.DEFAULT_INDEX]


def test_a_cached_copy_is_checked_before_it_is_returned(genuine, tmp_path, monkeypatch):
    pinned, path = genuine
    cache = tmp_path / "cache"
    cache.mkdir()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    (cache / path.name).write_bytes(data)
    monkeypatch.setenv("GIGAGPT_CACHE", str(cache))
    index = Index(tmp_path / "index")
    index.add("tiny-pkg", path)
    assert sdist_bytes(*pinned, PipIndexes([index.url])) == path.read_bytes()
    assert hashlib.sha256(kept(cache, path.name)).hexdigest() == pinned[2]
