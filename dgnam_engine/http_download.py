"""One HTTP download into a file, bounded in every way a server can stretch it.

- an overall deadline (DGNAM_DOWNLOAD_TIMEOUT seconds) and stall detection (no byte for DGNAM_DOWNLOAD_STALL
  seconds, which also bounds connecting and waiting for an answer);
- memory: one chunk at a time, straight to the file, hashed as it goes;
- resumes: a transfer cut short is resumed with a Range request, or started again where the server ignores Range,
  at most `attempts` transfers in all;
- every failure is a `DownloadFailed` with one line that says what the server did (refused, silent, stalled, cut
  short, HTTP status), never a guess.

Only the standard library's HTTP client: it honours the usual proxy variables and can be given a timeout on every
socket operation, which is what the bounds need.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import BinaryIO, Callable, Optional

from .errors import UserError
from .numbers import NumberError, decimal, is_whole

DEADLINE_ENV = "DGNAM_DOWNLOAD_TIMEOUT"
STALL_ENV = "DGNAM_DOWNLOAD_STALL"
CHUNK = 1 << 20  # the most one read returns, so the most held in memory
MAX_REDIRECTS = 5

Progress = Callable[[int, Optional[int]], None]  # (bytes done, total bytes or None)


class DownloadFailed(UserError):
    """The server did not deliver the file; the message says how, in one line (the caller adds the address)."""


class DownloadCancelled(UserError):
    """The user cancelled a download; nothing of it was kept."""


@dataclass(frozen=True)
class Limits:
    deadline: float = 3600.0  # seconds for the whole download, resumes included
    stall: float = 30.0  # seconds without a byte (connecting, waiting for the answer, reading)
    attempts: int = 3  # transfers in all: the first and at most two resumes
    max_bytes: Optional[int] = None  # the most a file may have: an endless answer stops there

    @classmethod
    def from_env(cls) -> "Limits":
        return cls(deadline=_seconds(DEADLINE_ENV, cls.deadline), stall=_seconds(STALL_ENV, cls.stall))


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = decimal(text)  # ASCII digits only: `float` also reads "٣" as 3 and "nan"
    except NumberError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise UserError(f"{name} must be a number of seconds above 0, not {text!r}")
    return value


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are followed by `open_url` itself: it counts them and drops credentials on another host."""

    def redirect_request(self, *args, **kwargs):
        return None


class Clock:
    """The deadline of one download, shared by its requests. Socket timeouts bound each wait by the stall limit; on
    top of that, when the deadline passes, every connection opened through `opener` is shut down, so not even a
    server that drips its headers a byte at a time can hold a download past it. Use it as a context manager."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.start = time.monotonic()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer: Optional[threading.Timer] = None
        self.opener = urllib.request.build_opener(_NoRedirects, _WatchedHTTP(self), _WatchedHTTPS(self))

    def left(self) -> float:
        return self.limits.deadline - (time.monotonic() - self.start)

    def timeout(self) -> float:
        """For the next socket operation: the stall limit, or less when the deadline is nearer."""
        return max(min(self.limits.stall, self.left()), 0.001)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self._timer is None:
                self._timer = threading.Timer(max(self.left(), 0.0), self._expire)
                self._timer.daemon = True
                self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed
                pass

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._socks.clear()

    def __enter__(self) -> "Clock":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _watched(http_class, clock: Clock):
    """A connection factory for urllib whose sockets the clock shuts down at the deadline."""

    def make(host, **kwargs):
        conn = http_class(host, **kwargs)
        connect = conn.connect

        def watched_connect():
            connect()
            clock.watch(conn.sock)

        conn.connect = watched_connect
        return conn

    return make


class _WatchedHTTP(urllib.request.HTTPHandler):
    def __init__(self, clock: Clock):
        super().__init__()
        self.clock = clock

    def http_open(self, req):
        return self.do_open(_watched(http.client.HTTPConnection, self.clock), req)


class _WatchedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, clock: Clock):
        super().__init__()
        self.clock = clock

    def https_open(self, req):
        return self.do_open(_watched(http.client.HTTPSConnection, self.clock), req, context=self._context,
                            check_hostname=self._check_hostname)


def _mb(n: Optional[int]) -> str:
    return "?" if n is None else f"{n / 1e6:.1f} MB"


def host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc




def open_url(method: str, url: str, headers: dict, clock: Clock, stop_at_other_host: bool = False):
    """The server's answer to `method url` once its headers have arrived (redirects followed, at most
    MAX_REDIRECTS). `stop_at_other_host`: return a redirect to another host as it is (the Hub's HEAD: its
    headers describe the file, its Location says where the bytes are)."""
    for _ in range(MAX_REDIRECTS + 1):
        _check_deadline(clock, None)
        req = urllib.request.Request(url, method=method, headers=headers)
        try:
            resp = clock.opener.open(req, timeout=clock.timeout())
        except urllib.error.HTTPError as exc:
            if exc.code not in (301, 302, 303, 307, 308) or not exc.headers.get("Location"):
                exc.close()
                raise DownloadFailed(_http_reason(exc)) from None
            target = urllib.parse.urljoin(url, exc.headers["Location"])
            if host_of(target) != host_of(url):
                if stop_at_other_host:
                    return exc
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            exc.close()
            url = target
            continue
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, a connection broken off
            _check_deadline(clock, None)  # the deadline shut the connection: say that
            raise DownloadFailed(_open_reason(url, exc, clock)) from None
        if clock.left() <= 0:  # the deadline cut the headers short: what arrived is no answer, say the deadline
            resp.close()
            _check_deadline(clock, None)
        return resp
    raise DownloadFailed(f"more than {MAX_REDIRECTS} redirects")


def _http_reason(exc: urllib.error.HTTPError) -> str:
    if exc.code == 404:
        return "HTTP 404, the file is not on the server"
    if exc.code in (401, 403):
        return f"HTTP {exc.code} {exc.reason}: the server wants a login (for the Hugging Face Hub: set HF_TOKEN)"
    return f"HTTP {exc.code} {exc.reason}".rstrip()


def _open_reason(url: str, exc: Exception, clock: Clock) -> str:
    if isinstance(exc, urllib.error.URLError):
        return _connect_reason(url, exc.reason, clock)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return _silent_reason(url, clock)
    if isinstance(exc, (http.client.HTTPException, ConnectionError)):
        return f"{host_of(url)} broke off before answering ({type(exc).__name__})"
    return f"{host_of(url)}: {getattr(exc, 'strerror', None) or type(exc).__name__}"


def _connect_reason(url: str, reason, clock: Clock) -> str:
    host = host_of(url)
    if isinstance(reason, ConnectionRefusedError):
        return f"cannot reach {host}: the connection was refused (nothing listens there; no network?)"
    if isinstance(reason, socket.gaierror):
        return f"cannot reach {host}: the name does not resolve (no network?)"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"cannot reach {host}: no connection within {clock.timeout():g} s (timed out)"
    text = getattr(reason, "strerror", None) or str(reason)
    return f"cannot reach {host}: {text}"


def _silent_reason(url: str, clock: Clock) -> str:
    if clock.left() <= 0:
        return (f"timed out: no answer from {host_of(url)} within the {clock.limits.deadline:g} s allowed "
                f"({DEADLINE_ENV})")
    return (f"timed out: {host_of(url)} accepted the connection but sent no answer within {clock.limits.stall:g} s "
            f"({STALL_ENV})")


def _check_deadline(clock: Clock, cancel: Optional[threading.Event], done: int = 0,
                    total: Optional[int] = None) -> None:
    if cancel is not None and cancel.is_set():
        raise DownloadCancelled("download cancelled: nothing was kept")
    if clock.left() <= 0:
        raise DownloadFailed(f"timed out: not finished within {clock.limits.deadline:g} s ({_mb(done)} of "
                             f"{_mb(total)} arrived; {DEADLINE_ENV} sets the time allowed)")


def _set_read_timeout(resp, seconds: float) -> None:
    """Narrow the socket's timeout as the deadline nears (http.client fixes it when connecting)."""
    try:
        resp.fp.raw._sock.settimeout(seconds)
    except AttributeError:  # another transport: the stall limit set at connecting still bounds each read
        pass


@dataclass
class Received:
    size: int
    sha256: str


def transfer(url: str, headers: dict, out: BinaryIO, clock: Clock, progress: Optional[Progress] = None,
             cancel: Optional[threading.Event] = None, expected_size: Optional[int] = None) -> Received:
    """GET `url` into `out` (an empty file opened for writing), resuming a transfer cut short, within `clock`'s
    limits; returns what arrived. Raises DownloadFailed or DownloadCancelled; the caller deletes its file."""
    limits = clock.limits
    digest, done, total = hashlib.sha256(), 0, expected_size
    ignored_range = False
    for attempt in range(1, limits.attempts + 1):
        broken = False
        ask = dict(headers, **({"Range": f"bytes={done}-"} if done else {}))
        resp = open_url("GET", url, ask, clock)
        with resp:
            if done and resp.status != 206:  # the server ignored the Range: start again from the first byte
                ignored_range = True
                out.seek(0)
                out.truncate()
                digest, done = hashlib.sha256(), 0
            elif done and not (resp.headers.get("Content-Range") or "").startswith(f"bytes {done}-"):
                raise DownloadFailed(f"the server resumed at the wrong place ({resp.headers.get('Content-Range')})")
            length = resp.headers.get("Content-Length")
            if resp.status == 200 and length and is_whole(length):
                if total is not None and int(length) != total:
                    raise DownloadFailed(f"the server sends {int(length)} bytes where it published {total}")
                total = int(length)
            if total is not None and limits.max_bytes is not None and total > limits.max_bytes:
                raise DownloadFailed(_too_big(total, limits.max_bytes, "announces"))
            try:
                while True:
                    _check_deadline(clock, cancel, done, total)
                    _set_read_timeout(resp, clock.timeout())
                    chunk = resp.read1(CHUNK)
                    if not chunk:
                        break
                    if limits.max_bytes is not None and done + len(chunk) > limits.max_bytes:
                        raise DownloadFailed(_too_big(done + len(chunk), limits.max_bytes, "sent"))
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
            except (TimeoutError, socket.timeout):
                _check_deadline(clock, cancel, done, total)
                raise DownloadFailed(f"stalled: no data for {limits.stall:g} s after {_mb(done)} of {_mb(total)} "
                                     f"({STALL_ENV} sets the time allowed)") from None
            except (http.client.HTTPException, ConnectionError):
                broken = True  # cut short: resumed below
        _check_deadline(clock, cancel, done, total)  # an end of data at the deadline is the deadline's doing
        if done == total or (total is None and not broken):
            return Received(done, digest.hexdigest())
        if total is not None and done > total:
            raise DownloadFailed(f"the server sent more than the {total} bytes it announced")
        if attempt < limits.attempts:
            _pause(min(0.5 * attempt, limits.stall / 2), clock, cancel, done, total)
    why = "; the server ignores resume requests" if ignored_range else ""
    raise DownloadFailed(f"the file arrived cut short {limits.attempts} times (the last time {_mb(done)} of "
                         f"{_mb(total)}){why}")


def _too_big(n: int, limit: int, did: str) -> str:
    return (f"the server {did} {_mb(n)}{' and more' if did == 'sent' else ''}, beyond the {_mb(limit)} this file "
            f"can have: it was refused, nothing was kept")


def _pause(seconds: float, clock: Clock, cancel: Optional[threading.Event], done: int, total: Optional[int]) -> None:
    end = time.monotonic() + min(seconds, max(clock.left(), 0))
    while time.monotonic() < end:
        _check_deadline(clock, cancel, done, total)
        time.sleep(min(0.05, max(end - time.monotonic(), 0)))
    _check_deadline(clock, cancel, done, total)
