"""A small real HTTP server on 127.0.0.1 for download tests, run in a thread.

Each path is served in one of three ways: the full file, a truncated body (a Content-Length larger than what is
sent, then the connection closes) or, for any path not registered, a 404.
"""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FileServer:
    def __init__(self):
        self.files: dict[str, tuple[bytes, bool]] = {}  # path -> (body, truncated)
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.requests.append(self.path)
                entry = server.files.get(self.path.split("?")[0])
                if entry is None:
                    body = b"not found\n"
                    self.send_response(404)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                body, truncated = entry
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if truncated else body)
                if truncated:
                    self.wfile.flush()
                    self.close_connection = True

            def log_message(self, *args):  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def serve(self, path: str, body: bytes, truncated: bool = False) -> str:
        """Register `body` at `path`; returns its full URL."""
        self.files[path] = (body, truncated)
        return self.url + path

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
