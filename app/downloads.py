"""Weights downloads started from the dashboard: one background thread per server, shared by every session, so
a page only polls its progress (as app/runs.py polls renders) and a download goes on when a tab is closed.

The files go where `fetch` puts them (the Hugging Face cache, TORCH_HOME/hub/checkpoints); every picker finds
them on its next rerun, because availability is looked up on disk each time, never cached.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Optional

import streamlit as st

from dgnam_engine import catalog as C
from dgnam_engine import weights as W
from dgnam_engine.errors import UserError

PAPER_SETUP = C.PAPER_SETUP
weight_file = C.weight_file  # what the engine's catalogue says each name downloads
is_present = C.present


def known_size(name: str) -> Optional[int]:
    """About how big a file is (the catalogue's figure), shown until the server states the exact size."""
    return next((e.size for e in C.networks() + C.priors() if e.name == name), None)


@dataclass
class Status:
    """A copy of the downloader's state for one rerun of a page."""

    current: Optional[str] = None
    done: int = 0
    total: Optional[int] = None
    started: float = 0.0
    queued: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)  # names downloaded since the server started
    error: Optional[str] = None  # the last failure, one line
    cancelled: bool = False

    @property
    def active(self) -> bool:
        return self.current is not None or bool(self.queued)

    def speed(self) -> Optional[float]:
        """Bytes per second of the current file."""
        dt = time.monotonic() - self.started
        return self.done / dt if self.current and dt > 0.5 and self.done else None

    def eta(self) -> Optional[float]:
        s = self.speed()
        return (self.total - self.done) / s if s and self.total else None


class Downloader:
    def __init__(self):
        self._lock = threading.Lock()
        self._status = Status()
        self._cancel = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def status(self) -> Status:
        with self._lock:
            s = self._status
            return Status(s.current, s.done, s.total, s.started, list(s.queued), list(s.finished), s.error,
                          s.cancelled)

    def start(self, names) -> None:
        """Queue the downloads of `names` (missing ones only, each once) and start the thread if it is idle."""
        with self._lock:
            s = self._status
            if not s.active:
                s.error, s.cancelled = None, False
            for n in names:
                if n != s.current and n not in s.queued and not is_present(n):
                    s.queued.append(n)
            if s.queued and (self._thread is None or not self._thread.is_alive()):
                self._cancel.clear()
                self._thread = threading.Thread(target=self._run, name="dgnam-downloads", daemon=True)
                self._thread.start()

    def cancel(self) -> None:
        """Stop the current download (its partial file is deleted) and drop the queue."""
        with self._lock:
            self._status.queued.clear()
            if self._status.current is not None:
                self._cancel.set()

    def wait(self, timeout: float) -> None:
        t = self._thread
        if t is not None:
            t.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                s = self._status
                if not s.queued:
                    s.current = None
                    return
                name = s.current = s.queued.pop(0)
                s.done, s.total, s.started = 0, None, time.monotonic()  # the server states it as it sends
            try:
                W.fetch(weight_file(name), self._progress, self._cancel)
            except W.DownloadCancelled:
                with self._lock:
                    self._status.cancelled = True
                    self._status.queued.clear()
            except UserError as exc:
                with self._lock:
                    self._status.error = str(exc)
                    self._status.queued.clear()  # the next file would most likely fail the same way
            except Exception as exc:  # keep the thread's users informed rather than dying silently
                with self._lock:
                    self._status.error = f"download of {name} failed: {type(exc).__name__}: {exc}"[:300]
                    self._status.queued.clear()
            else:
                with self._lock:
                    self._status.finished.append(name)
            finally:
                self._cancel.clear()

    def _progress(self, done: int, total: Optional[int]) -> None:
        with self._lock:
            self._status.done = done
            if total:
                self._status.total = total


@st.cache_resource(show_spinner=False)
def downloader() -> Downloader:
    """The server's one downloader."""
    return Downloader()


def size_label(name: str) -> str:
    """The catalogue's figure: Setup asks no server anything until a Download button is pressed."""
    n = known_size(name)
    return f"about {n / 1e6:.0f} MB" if n else "size shown once it downloads"


def human_bytes(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def human_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def progress_text(st_: Status) -> tuple[float, str]:
    """Fraction and one line: name, bytes, speed, time left."""
    if st_.current is None:
        return 0.0, "starting…"
    total = st_.total
    frac = min(1.0, st_.done / total) if total else 0.0
    parts = [f"{st_.current}: {human_bytes(st_.done)}" + (f" of {human_bytes(total)}" if total else "")]
    speed = st_.speed()
    if speed:
        parts.append(f"{human_bytes(speed)}/s")
    eta = st_.eta()
    if eta is not None:
        parts.append(f"{human_time(eta)} left")
    if st_.queued:
        parts.append(f"then {', '.join(st_.queued)}")
    return frac, " · ".join(parts)
