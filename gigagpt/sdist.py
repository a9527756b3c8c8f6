"""Pinned source distributions from the package index pip is set up with, checked before use.

`pip download` of a source distribution builds it (installs its build requirements, runs its
setup.py or build backend) before its caller can check its sha256: a tampered file from a
compromised index would run code. So the file is fetched here, without pip: the index-url,
extra-index-url and find-links that `pip download` would use (`pip config list`, PIP_* variables)
are searched for the exact file name on their simple pages (PEP 503 HTML or PEP 691 JSON); the
file is read into memory with a size cap, and only bytes with the pinned sha256 are returned and
cached. A cached copy is checked the same way before it is read. Nothing in a file is run or
extracted to disk: callers read its members from the returned bytes with tarfile.
"""
from __future__ import annotations

import ast
import hashlib
import http.client
import json
import os
import posixpath
import re
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit, urlunsplit

from gigagpt.settings import cache_dir

DEFAULT_INDEX = "https://pypi.org/simple"
MAX_BYTES = 64 << 20  # the pinned sdists are 0.8 and 5.4 MB: a bigger answer is not one of them
MAX_PAGE_BYTES = 32 << 20  # a project's simple page; PyPI's largest are a few MB
ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
          "text/html;q=0.1")
JSON_PAGE = "application/vnd.pypi.simple.v1+json"
FIX = (f"`{sys.executable} -m pip config list` shows pip's index-url, extra-index-url and "
       "find-links; point PIP_INDEX_URL at an index that serves the pinned file")


class DownloadError(Exception):
    """A pinned sdist cannot be had; the message says which, from where, and what to do."""


class TooLarge(ValueError):
    """An answer past its size cap."""


@dataclass
class PipIndexes:
    """Where `pip download` would look for a package, and how it would connect."""
    index_urls: list[str] = field(default_factory=lambda: [DEFAULT_INDEX])
    find_links: list[str] = field(default_factory=list)  # directories, file: or http(s) pages
    cert: str | None = None  # CA bundle for https (pip's `cert`)
    proxy: str | None = None  # pip's `proxy`; without it urllib reads *_proxy from the environment
    timeout: float = 15.0  # seconds, pip's default


def pip_settings() -> dict[str, str]:
    """pip's settings as `pip config list` names them ("global.index-url", ":env:.cert"), with the
    PIP_* variables even where pip cannot be run."""
    settings = {}
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            try:
                settings[key] = str(ast.literal_eval(value))  # pip prints repr(value)
            except (ValueError, SyntaxError):
                settings[key] = value
    for key, value in os.environ.items():  # the same names pip gives them
        if key.startswith("PIP_"):
            settings[":env:." + key[4:].lower().replace("_", "-")] = value
    return settings


def pip_indexes() -> PipIndexes:
    """What `pip download` reads: PIP_* variables over its [download] section over [global]."""
    settings = pip_settings()

    def get(*keys):
        for section in (":env:", "download", "global"):
            for key in keys:
                if f"{section}.{key}" in settings:
                    return settings[f"{section}.{key}"]
        return None

    no_index = (get("no-index") or "").lower() in ("1", "true", "yes", "on")
    urls = [] if no_index else [get("index-url") or DEFAULT_INDEX,
                                *(get("extra-index-url") or "").split()]
    try:
        timeout = float(get("timeout", "default-timeout") or 15)
    except ValueError:
        timeout = 15.0
    return PipIndexes(urls, (get("find-links") or "").split(), get("cert"), get("proxy"), timeout)


def shown(url: str) -> str:
    """url without its user:password: for messages, and for urllib (the opener sends them)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def make_opener(indexes: PipIndexes) -> urllib.request.OpenerDirector:
    """urllib with pip's CA bundle, proxy and the credentials written into index URLs."""
    context = ssl.create_default_context(cafile=indexes.cert)
    if not indexes.cert:
        try:  # pip trusts certifi's bundle by default; the system's stays trusted too
            import certifi
            context.load_verify_locations(certifi.where())
        except (ImportError, OSError):
            pass
    auth = urllib.request.HTTPPasswordMgrWithPriorAuth()
    for url in indexes.index_urls + indexes.find_links:
        parts = urlsplit(url)
        if parts.username:  # sent up front to that host, as pip does for https://user:pw@host/
            host = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], "/", "", ""))
            auth.add_password(None, host, unquote(parts.username), unquote(parts.password or ""),
                              is_authenticated=True)
    handlers = [urllib.request.HTTPSHandler(context=context),
                urllib.request.HTTPBasicAuthHandler(auth)]
    if indexes.proxy:
        handlers.append(urllib.request.ProxyHandler({"http": indexes.proxy,
                                                     "https": indexes.proxy}))
    return urllib.request.build_opener(*handlers)


def local_path(url: str) -> Path | None:
    return Path(urllib.request.url2pathname(urlsplit(url).path)) if url.startswith("file:") else None


def read(opener, url: str, cap: int, timeout: float, accept: str = "*/*") -> tuple[bytes, str]:
    """The body (at most cap bytes, else TooLarge) and content type of url."""
    request = urllib.request.Request(shown(url), headers={"Accept": accept})
    with opener.open(request, timeout=timeout) as answer:
        if int(answer.headers.get("Content-Length") or 0) > cap:
            raise TooLarge(f"larger than {cap >> 20} MiB")
        body = answer.read(cap + 1)
        if len(body) > cap:
            raise TooLarge(f"larger than {cap >> 20} MiB")
        return body, answer.headers.get("Content-Type", "")


class Anchors(HTMLParser):
    """The href of every <a> of a page, and its <base>."""

    def __init__(self):
        super().__init__()
        self.base, self.hrefs = None, []

    def handle_starttag(self, tag, attrs):
        href = dict(attrs).get("href")
        if href and tag == "base":
            self.base = href
        elif href and tag == "a":
            self.hrefs.append(href)


def files_on(url: str, body: bytes, content_type: str) -> dict[str, str]:
    """File name -> URL of each file a simple page (PEP 691 JSON or PEP 503 HTML) links to."""
    if content_type.split(";")[0].strip() == JSON_PAGE:
        return {f["filename"]: urljoin(url, f["url"]) for f in json.loads(body)["files"]}
    page = Anchors()
    page.feed(body.decode("utf-8", "replace"))
    base = urljoin(url, page.base) if page.base else url
    links = [urldefrag(urljoin(base, href))[0] for href in page.hrefs]
    return {unquote(posixpath.basename(urlsplit(link).path)): link for link in links}


def listing(opener, place: str, name: str, index: bool, timeout: float) -> dict[str, str]:
    """The files a simple index offers for project `name`, or those a find-links place holds."""
    url = place.rstrip("/") + f"/{name}/" if index else place
    if "://" not in url:  # find-links as a plain path
        url = Path(url).resolve().as_uri()
    path = local_path(url)
    if path and path.is_dir() and not index:  # a find-links directory: its files
        return {p.name: p.as_uri() for p in path.iterdir() if p.is_file()}
    if path and path.is_dir():  # a file: index keeps each project page as its index.html
        url = (path / "index.html").as_uri()
    body, content_type = read(opener, url, MAX_PAGE_BYTES, timeout, ACCEPT)
    return files_on(url, body, content_type)


def why(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    reason = getattr(e, "reason", None) or e
    return " ".join(str(reason).split()) or type(e).__name__


def download(requirement: str, filename: str, indexes: PipIndexes) -> tuple[str, bytes]:
    """The first copy of filename found on indexes' find-links, then index URLs: its URL and
    bytes (not yet checked)."""
    name = re.sub(r"[-_.]+", "-", requirement.split("==")[0]).lower()  # PEP 503's normal form
    try:
        opener = make_opener(indexes)
    except OSError as e:  # pip's cert setting names a missing or broken CA bundle
        raise DownloadError(f"{requirement}: cannot use pip's cert {indexes.cert} ({why(e)}); "
                            "fix pip's `cert` setting or PIP_CERT") from None
    places = [(p, False) for p in indexes.find_links] + [(u, True) for u in indexes.index_urls]
    tried = []
    for place, index in places:
        try:
            url = listing(opener, place, name, index, indexes.timeout).get(filename)
        except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException) as e:
            tried.append(f"{shown(place)}: {why(e)}")
            continue
        if url is None:
            tried.append(f"{shown(place)}: no {filename}")
            continue
        if local_path(url) and urlsplit(place).scheme in ("http", "https"):
            tried.append(f"{shown(place)}: links to a local file")  # a remote page may not
            continue
        try:
            return url, read(opener, url, MAX_BYTES, indexes.timeout)[0]
        except TooLarge as e:
            raise DownloadError(f"{requirement}: {shown(url)} is {e}, not the pinned {filename}: "
                                f"refused, nothing of it kept; {FIX}") from None
        except (OSError, ValueError, http.client.HTTPException) as e:
            tried.append(f"{shown(url)}: {why(e)}")
    raise DownloadError(f"{requirement}: cannot download {filename} from pip's package indexes "
                        f"({'; '.join(tried) or 'none: no-index and no find-links'}); {FIX}")


def cached(path: Path, sha256: str) -> bytes | None:
    """The cached copy's bytes when they have the pinned sha256; a damaged copy is removed."""
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # a bigger file is damaged whatever its tail
    except FileNotFoundError:  # another process found it damaged and removed it
        return None
    digest = hashlib.sha256(data).hexdigest()
    if digest == sha256:
        return data
    path.unlink(missing_ok=True)
    print(f"gigagpt: warning: {path}: this cached download is damaged (sha256 {digest}, "
          f"expected {sha256}); removed it; downloading it again", file=sys.stderr)
    return None


def keep(path: Path, data: bytes) -> None:
    """Write data to path through an exclusive temporary file beside it, renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # as a plain download would be: a shared cache stays readable
        os.replace(tmp, path)  # atomic: readers see no file or the whole checked one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sdist_bytes(requirement: str, filename: str, sha256: str,
                indexes: PipIndexes | None = None) -> bytes:
    """The bytes of a pinned source distribution, checked against its sha256 before anything
    reads them: the cached copy when intact, else a download from pip's package indexes (or
    indexes), cached once checked."""
    path = cache_dir() / filename
    data = cached(path, sha256)
    if data is not None:
        return data
    url, data = download(requirement, filename, indexes or pip_indexes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DownloadError(f"{requirement}: {shown(url)} has sha256 {digest}, expected "
                            f"{sha256}: refused, nothing in it run or kept; the index serves "
                            f"another file than the pinned one; {FIX}")
    try:
        keep(path, data)
    except OSError as e:
        raise DownloadError(f"{path}: cannot store {requirement}'s checked download "
                            f"({e.strerror or e}); check GIGAGPT_CACHE") from None
    return data
