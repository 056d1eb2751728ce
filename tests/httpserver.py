"""A small real HTTP server on 127.0.0.1 for download tests, run in a thread.

It stands in for the torch download host (plain files under their path, via DGNAM_TORCH_MIRROR) and for the
Hugging Face Hub (via HF_ENDPOINT): huggingface_hub asks `HEAD /{repo}/resolve/main/{file}` for the file's
commit (X-Repo-Commit), ETag and size, then GETs the same address. Each file is served whole, truncated (a
Content-Length larger than what is sent, then the connection closes), or slowly (in pieces with a pause, so a
test can watch progress and cancel); any path not registered gets a 404.
"""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Union
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Body = Union[bytes, Path]  # large bodies stay on disk

HUB_COMMIT = "0123456789abcdef0123456789abcdef01234567"  # any 40-hex commit id; the Hub cache files by it


class FileServer:
    def __init__(self):
        self.files: dict[str, tuple[Body, bool, float, str]] = {}  # path -> (body, truncated, pause_s, etag)
        self.requests: list[str] = []  # "GET /path" / "HEAD /path"
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, with_body: bool):
                server.requests.append(f"{self.command} {self.path}")
                entry = server.files.get(self.path.split("?")[0])
                if entry is None:
                    body = b"not found\n"
                    self.send_response(404)
                    self.send_header("Content-Length", str(len(body)))
                    if "/resolve/" in self.path:  # as the Hub says it
                        self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    if with_body:
                        self.wfile.write(body)
                    return
                body, truncated, pause, etag = entry
                size = body.stat().st_size if isinstance(body, Path) else len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.send_header("ETag", f'"{etag}"')
                self.send_header("X-Repo-Commit", HUB_COMMIT)
                self.end_headers()
                if not with_body:
                    return
                n = size // 2 if truncated else size
                step = max(n // 50, 1 << 16) if pause else 1 << 20
                try:
                    for i in range(0, n, step):
                        self.wfile.write(_piece(body, i, min(step, n - i)))
                        if pause:
                            self.wfile.flush()
                            time.sleep(pause)
                except (BrokenPipeError, ConnectionResetError):  # the client cancelled
                    self.close_connection = True
                    return
                if truncated:
                    self.wfile.flush()
                    self.close_connection = True

            def do_GET(self):
                self._answer(True)

            def do_HEAD(self):
                self._answer(False)

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def serve(self, path: str, body: Body, truncated: bool = False, pause: float = 0.0) -> str:
        """Register `body` (bytes, or a file on disk) at `path`; returns its full URL. `pause`: seconds between
        pieces of ~2% of the body."""
        self.files[path] = (body, truncated, pause, sha256_of(body))
        return self.url + path

    def serve_hub(self, repo: str, filename: str, body: Body, **kw) -> str:
        """Serve a Hub file as huggingface_hub asks for it (HF_ENDPOINT=self.url)."""
        return self.serve(f"/{repo}/resolve/main/{filename}", body, **kw)

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def sha256_of(body: Body) -> str:
    if isinstance(body, bytes):
        return hashlib.sha256(body).hexdigest()
    h = hashlib.sha256()
    with open(body, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _piece(body: Body, start: int, n: int) -> bytes:
    if isinstance(body, bytes):
        return body[start:start + n]
    with open(body, "rb") as f:
        f.seek(start)
        return f.read(n)
