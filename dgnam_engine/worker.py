"""One worker per device: runs from every front-end session queue (first in, first out) instead of fighting over
the GPU or the CPU cores. On a CPU the worker has one lane per group of cores a pass uses
(accel.cpu_lanes: one lane on a laptop, several on a workstation), so runs go side by side where every pass still
has its fixed thread count, and a run gives the same picture whichever lane runs it.

A job is one request (request.Request), resolved on the worker's device and run by `runner.run`. Pollers read
its state, queue position, step, activations so far and a preview image; `cancel()` stops it at the next step
(the progress callback returns False). Results go into the results store only when the run finished and was not
cancelled, so a stopped or failed run stores nothing; each finished unit is stored on its own, so one that cannot
be stored keeps the others.
Models and priors come from runner's shared caches, so each is loaded once for all sessions.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import replace
from typing import Optional

import numpy as np

from . import accel, runner
from .convention import to_uint8
from .errors import RunCancelled, UserError
from .request import Request, resolve
from .store import ResultsStore, StoredResult
from .targets import resolve_device

__all__ = ["Job", "Request", "Worker", "get_worker"]  # Request: the one request type (request.py), as before

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINAL = (DONE, FAILED, CANCELLED)


_ids = itertools.count(1)


class Job:
    def __init__(self, request: Request, store: Optional[ResultsStore], preview_every: int):
        self.id = next(_ids)
        self.request = request
        self.store = store
        self.preview_every = preview_every
        self.state = QUEUED
        self.step = 0  # steps done
        self.n_iters: Optional[int] = None
        self.curves: list[list[float]] = []  # activation per step, one list per (unit, seed)
        self.preview: Optional[list[np.ndarray]] = None  # latest preview images, HxWx3 uint8
        self.results: list[runner.UnitResult] = []
        self.stored: list[StoredResult] = []
        self.error: Optional[str] = None
        self.submitted = time.time()
        self.started: Optional[float] = None
        self.finished: Optional[float] = None
        self._cancel = threading.Event()
        self._done = threading.Event()
        self.warmup = False  # Worker.warm: prepares a kind of run, stores nothing, nobody waits for it

    @property
    def done(self) -> bool:
        return self.state in FINAL

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return self._done.wait(timeout)

    def _finish(self, state: str, error: Optional[str] = None) -> None:
        self.error = error
        self.finished = time.time()
        self.state = state
        self._done.set()

    def _on_step(self, info) -> bool:
        if self._cancel.is_set():
            return False
        self.n_iters = info.n_iters
        acts = [float(a) for a in info.activations]
        if not self.curves:
            self.curves = [[] for _ in acts]
        for c, a in zip(self.curves, acts):
            c.append(a)
        if info.images is not None:
            self.preview = to_uint8(info.images)
        self.step = info.step + 1
        return True


class Worker:
    """Runs the jobs of one device on `lanes` daemon threads, each job on one lane from start to end."""

    def __init__(self, device: str = "cpu", lanes: Optional[int] = None):
        self.device = device
        self.lanes = lanes or default_lanes(device)
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._threads: list[threading.Thread] = []
        self.running: list[Job] = []
        self._warmed: set[tuple] = set()

    def submit(self, request: Request, store: Optional[ResultsStore] = None, preview_every: int = 5,
               warmup: bool = False) -> Job:
        job = Job(request, store, preview_every)
        job.warmup = warmup
        try:  # the steps it will take, for progress bars before its first step (a bad request fails when it runs)
            job.n_iters = resolve(replace(request, device=self.device)).n_iters
        except Exception:  # noqa: BLE001 - the run resolves it again and reports the reason in one line
            pass
        with self._cv:
            self._queue.append(job)
            self._threads = [t for t in self._threads if t.is_alive()]
            while len(self._threads) < self.lanes:
                t = threading.Thread(target=self._loop, name=f"dgnam-worker-{self.device}-{len(self._threads)}",
                                     daemon=True)
                t.start()
                self._threads.append(t)
            self._cv.notify()
        return job

    def warm(self, request: Request) -> Optional[Job]:
        """Prepare what a request's run needs (the network, the prior, the fast path's converted copies and packed
        weights) with a 2-step run that stores nothing, once per kind of run, so the first real run starts at
        once. A warm-up counts as no one's run in a queue position. None when that kind is warm already."""
        s = request.settings
        kind = (request.model, request.layer, s.method, s.prior, s.accel, request.prior_file, request.model_weights)
        with self._cv:
            if kind in self._warmed:
                return None
            self._warmed.add(kind)
        quick = replace(request, units=list(request.units[:1]), seeds=None,
                        settings=replace(s, n_iters=2, init_image=None, objective=None, position=None,
                                         preview=True))
        return self.submit(quick, None, preview_every=0, warmup=True)

    def position(self, job: Job) -> Optional[int]:
        """How many runs are ahead of a queued job (running ones included; it starts once fewer than `lanes` are
        ahead); None once it runs or ended."""
        with self._cv:
            ahead = sum(1 for j in self.running if not j.warmup)
            for j in self._queue:
                if j is job:
                    return ahead
                if not j.cancel_requested and not j.warmup:
                    ahead += 1
        return None

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                job = self._queue.popleft()
                self.running.append(job)
            try:
                self._run(job)
            finally:
                with self._cv:
                    self.running.remove(job)

    def _run(self, job: Job) -> None:
        if job.cancel_requested:
            job._finish(CANCELLED)
            return
        job.state, job.started = RUNNING, time.time()
        try:
            run = resolve(replace(job.request, device=self.device))
            results = runner.run(run, callback=job._on_step, preview_every=job.preview_every)
            if job.cancel_requested:
                raise RunCancelled("run cancelled")
            job.results = results
            unsaved = self._store_each(job, results) if job.store is not None else None
            if unsaved:
                job._finish(FAILED, unsaved)
                return
        except RunCancelled:
            job._finish(CANCELLED)
        except UserError as exc:
            job._finish(FAILED, str(exc))
        except Exception as exc:  # keep the worker alive; the page shows one line, the log the details
            log.exception("run %s failed", job.id)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            job._finish(FAILED, f"the run failed unexpectedly ({type(exc).__name__}: {first})")
        else:
            job._finish(DONE)


    @staticmethod
    def _store_each(job: Job, results: list) -> Optional[str]:
        """Store every finished unit on its own (keyed by the run that made it), so one that cannot be stored keeps
        the others; returns a line about those that were not stored (None when all were)."""
        failed: list[str] = []
        for res in results:
            try:
                job.stored.append(job.store.put(res))
            except Exception as exc:  # noqa: BLE001 - reported below; the other units are still stored
                log.warning("run %s: unit %s not stored: %s", job.id, res.unit, exc)
                failed.append(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if not failed:
            return None
        if len(failed) == len(results):  # a read-only or full store: there are no others to speak of
            if len(results) == 1:
                return f"the picture could not be stored: {failed[0]}"
            return f"none of the {len(results)} pictures could be stored: {failed[0]}"
        return (f"{len(failed)} of {len(results)} pictures could not be stored, the others were: {failed[0]}")


def default_lanes(device: str) -> int:
    """One lane on a GPU (a run fills it); on a CPU as many as passes fit side by side on the cores."""
    if not str(device).startswith("cpu"):
        return 1
    try:
        return accel.cpu_lanes(accel.cpu_pass_threads())
    except UserError:  # a bad DGNAM_CPU_THREADS: every run says so in one line; one lane meanwhile
        return 1


_workers: dict[str, Worker] = {}
_workers_lock = threading.Lock()


def get_worker(device: str = "auto") -> Worker:
    """The one worker of a device ("auto": the GPU when there is one), shared by every caller in the process."""
    dev = str(resolve_device(device))
    with _workers_lock:
        if dev not in _workers:
            _workers[dev] = Worker(dev)
        return _workers[dev]
