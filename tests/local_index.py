"""A real package index on this machine for the download tests: a PEP 503 tree of files (for
file:// index URLs and find-links) and an http.server thread serving it, as PEP 503 HTML or
PEP 691 JSON, optionally behind basic auth."""
import base64
import hashlib
import io
import json
import tarfile
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_sdist(path: Path, top: str, marker: Path, members=None) -> str:
    """Write a source distribution whose setup.py and PEP 517 build backend each write marker
    when run (what pip does to any sdist it downloads); returns its sha256."""
    run_me = f"open({str(marker)!r}, 'w').write('this sdist was run')\n"
    files = {
        "PKG-INFO": "Metadata-Version: 2.1\nName: tampered\nVersion: 1.0\n",
        "setup.py": run_me + "from setuptools import setup\nsetup()\n",
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                          'backend-path = ["."]\n',
        "backend.py": run_me,
        **(members or {}),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode() if isinstance(text, str) else text
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


class Index:
    """root/simple/<project>/index.html linking root/files/<filename>."""

    def __init__(self, root: Path):
        self.root = root
        self.requests = []  # paths the http server was asked for
        (root / "files").mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return (self.root / "simple").as_uri()

    @property
    def files(self) -> Path:
        return self.root / "files"

    def add(self, project: str, file: Path, href=None) -> None:
        """Offer file for project (href: a link of the page's own instead of ../../files/)."""
        (self.files / file.name).write_bytes(file.read_bytes())
        sha = hashlib.sha256(file.read_bytes()).hexdigest()
        page = self.root / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        link = href or f"../../files/{file.name}#sha256={sha}"
        (page / "index.html").write_text(
            f'<!DOCTYPE html><html><body><a href="{link}">{file.name}</a></body></html>\n')

    @contextmanager
    def serve(self, as_json: bool = False, auth=None):
        """An http.server thread on 127.0.0.1; yields its simple index URL."""
        index = self
        want = "Basic " + base64.b64encode(":".join(auth).encode()).decode() if auth else None

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                index.requests.append(self.path)
                if want and self.headers.get("Authorization") != want:
                    return self.answer(401, b"", "text/plain")
                parts = [p for p in self.path.split("/") if p]
                if parts[:1] == ["files"] and len(parts) == 2 and (index.files / parts[1]).is_file():
                    return self.answer(200, (index.files / parts[1]).read_bytes(),
                                       "application/octet-stream")
                page = index.root / "simple" / "/".join(parts[1:]) / "index.html"
                if parts[:1] != ["simple"] or len(parts) != 2 or not page.is_file():
                    return self.answer(404, b"not found", "text/plain")
                if not as_json:
                    return self.answer(200, page.read_bytes(), "text/html")
                files = [{"filename": p.name, "url": f"/files/{p.name}", "hashes": {}}
                         for p in index.files.iterdir()]
                body = json.dumps({"meta": {"api-version": "1.0"}, "name": parts[1],
                                   "files": files}).encode()
                return self.answer(200, body, "application/vnd.pypi.simple.v1+json")

            def answer(self, code, body, content_type):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                if code == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="index"')
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet test output
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/simple"
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
