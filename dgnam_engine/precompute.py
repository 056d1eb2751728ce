"""`python -m dgnam_engine precompute`: render many units in large batches into the results store.

Units already in the store (with a good picture) are skipped, and every unit is stored as soon as it is done: on a
CPU a batch is rendered in pieces of CPU_STORE_EVERY units, so a kill in the middle of a batch keeps what finished,
and a run that was killed resumes where it stopped. Ctrl-C (or a plain kill) says exactly what was written.
With `--ray ADDRESS` the batches become Ray tasks (one per GPU, or per CPU worker); their results come back to this
process, which alone writes the store, and a failed task's units are retried.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import replace
from typing import Callable, Iterable, Optional

from . import accel as A
from . import json_out, numbers
from .atlas import all_atlases
from .cli_options import add_model_options, add_output_options, add_prior_options, add_store_option, whole_arg
from . import runner
from . import targets as T
from .errors import UserError
from .request import Request, Settings, on_worker, resolve
from .store import ResultsStore

RETRIES = 2  # further tries of a failed batch before its units are reported as failed
# Units rendered (and then stored) together inside a CPU batch. Measured on 2 busy cores, lite0, 10 steps,
# 16 units: one call of 16 0.66-0.82 units/s, pieces of 4 0.66-1.07 units/s, pieces of 1 0.71 (noise dominates):
# on a CPU the batch brings no speed worth losing 16 units to a kill. On a GPU the whole batch is one piece.
CPU_STORE_EVERY = 4
RAY_GPU_BATCH = 256  # units per Ray task on a GPU: fits any GPU with 8 GB for the largest priors and targets


def render(request: Request, units: list[int]) -> list[runner.UnitResult]:
    """One batch, in one run: `request` resolved for `units` where this process runs it."""
    return runner.run(resolve(replace(request, units=list(units), seeds=None)))


def store_results(store: ResultsStore, results: Iterable[runner.UnitResult], progress: "Progress") -> None:
    """Store each result on its own, keyed by the run that made it (on a Ray worker: the device and precision
    that worker used), and count it at once, so an interruption knows exactly what was written."""
    for res in results:
        with _stop_signals.deferred():  # stored and counted, or neither: the interruption line stays exact
            store.put(res)
            progress.add([res.unit])


def auto_batch(request: Request, n_units: int, unit: int) -> int:
    """Units per batch for this device: on a GPU, sized from probe runs of the real settings (fast path and CUDA
    graph included, accel.PROBE_STEPS steps) and confirmed by one run at the chosen size; accel.CPU_BATCH on a
    CPU."""
    dev = T.resolve_device(request.device)
    probe_request = replace(request, settings=replace(request.settings, n_iters=A.PROBE_STEPS))

    def probe(k: int) -> None:
        render(probe_request, [unit] * k)
    return A.auto_batch_size(n_units, dev, probe if dev.type == "cuda" else None)


class Progress:
    """A one-line progress bar on stderr (a line per update when stderr is not a terminal)."""

    def __init__(self, total: int, quiet: bool):
        self.total, self.done, self.quiet = total, 0, quiet
        self.written: list[int] = []  # the units stored, in order
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def add(self, units: list[int]) -> None:
        self.written.extend(units)
        self.done += len(units)
        if self.quiet:
            return
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        filled = int(30 * self.done / max(self.total, 1))
        line = (f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} units  "
                f"{rate:.2f} units/s  ETA {eta:.0f} s")
        print(("\r" + line) if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            print(file=sys.stderr)


def chunks(units: list[int], size: int) -> list[list[int]]:
    return [units[i:i + size] for i in range(0, len(units), size)]


def store_every(request: Request, batch: int) -> int:
    """Units rendered in one piece: the whole batch on a GPU, CPU_STORE_EVERY on a CPU (see above)."""
    return batch if T.resolve_device(request.device).type == "cuda" else min(batch, CPU_STORE_EVERY)


def run_local(request: Request, batches: list[list[int]], store: ResultsStore, progress: Progress) -> None:
    for batch in batches:
        for piece in chunks(batch, store_every(request, len(batch))):
            store_results(store, render(request, piece), progress)


def _ray_task(request: Request, units: list[int]) -> list[runner.UnitResult]:
    """On a Ray worker: resolved and run there, on the GPU Ray gave this task, else the CPU."""
    import ray

    return render(on_worker(request, ray.get_gpu_ids()), units)


def run_ray(request: Request, units: list[int], batch: Optional[int], store: ResultsStore, progress: Progress,
            address: str, workers: Optional[int], task: Callable = _ray_task) -> list[int]:
    """Batches of `units` as Ray tasks (batch None: RAY_GPU_BATCH on GPU clusters, accel.CPU_BATCH on CPU ones);
    results are stored here as they arrive. Returns the units that failed even after RETRIES more tries.
    `address` 'local' starts a private instance with `workers` CPU workers."""
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs the ray package: pip install 'ray==2.60.0'") from None
    with contextlib.ExitStack() as stack:
        guard = None
        if not ray.is_initialized():
            if address == "local":  # on 127.0.0.1 only, and gone with this process (ray_local.py)
                from . import ray_local

                guard = stack.enter_context(ray_local.instance(workers or A.cpu_lanes(A.cpu_pass_threads())))
            else:
                try:
                    ray.init(address=address, log_to_driver=False)
                except (ConnectionError, ValueError, RuntimeError) as exc:
                    raise UserError(f"cannot join the Ray cluster at {address}: "
                                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from None
                stack.callback(ray.shutdown)
        return _run_tasks(ray, request, units, batch, store, progress, task, guard)


def _run_tasks(ray, request: Request, units: list[int], batch: Optional[int], store: ResultsStore,
               progress: Progress, task: Callable, guard) -> list[int]:
    """The tasks on the Ray instance `ray` is joined to; `guard` (a local instance's) learns of new workers."""
    gpus = int(ray.cluster_resources().get("GPU", 0))
    # One task per GPU, or per CPU worker. Retries are ours (below), for crashes and errors alike.
    remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1, max_retries=0)(task)
    req = replace(request, device="auto")  # each worker resolves the device it has (request.on_worker)
    size = batch or (RAY_GPU_BATCH if gpus else A.CPU_BATCH)
    pending = {remote.remote(req, b): (b, 0) for b in chunks(units, size)}
    failed: list[int] = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        if guard is not None:
            guard.watch_ray()  # the workers Ray started for these tasks
        ref = done[0]
        batch, tries = pending.pop(ref)
        try:
            results = ray.get(ref)
        except ray.exceptions.RayError:
            if tries < RETRIES:
                pending[remote.remote(req, batch)] = (batch, tries + 1)
            else:
                failed.extend(batch)
            continue
        store_results(store, results, progress)
    return failed


def _written(progress: Progress) -> str:
    w = progress.written
    if not w:
        return "nothing"
    listed = ",".join(map(str, w[:30])) + (",..." if len(w) > 30 else "")
    return f"{len(w)} unit{'s' if len(w) > 1 else ''} ({listed})"


class _StopSignals:
    """Ctrl-C and a plain kill (SIGTERM) end precompute with KeyboardInterrupt, so both say what was written; one
    that arrives while a unit is being stored waits until it is stored and counted."""

    def __init__(self):
        self.old: dict = {}
        self.depth = 0
        self.pending = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.old.items():
            signal.signal(sig, handler)
        self.old.clear()
        self.pending = False
        return False

    def _on_signal(self, signum, frame):
        if self.depth:
            self.pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if self.pending and not self.depth:
            self.pending = False
            raise KeyboardInterrupt


_stop_signals = _StopSignals()


def parse_units(text: str, n_units: int) -> list[int]:
    if text.strip() == "all":
        return list(range(n_units))
    return numbers.unit_list(text, n_units)  # each unit once, in the order given; an empty range is an error


def cmd_precompute(args) -> int:
    if args.batch != "auto" and (not numbers.is_whole(args.batch) or int(args.batch) < 1):
        raise UserError(f"bad --batch {args.batch!r}: use auto or a positive number")
    settings = Settings(prior=args.prior, n_iters=args.iters, seed=args.seed, accel="plain" if args.plain else "auto")
    args.model = args.model or T.default_target()
    shapes = T.load_target(args.model, "cpu", random_weights=True)  # unit counts do not depend on the weights
    layer = shapes.layer(args.layer)
    units = parse_units(args.units, layer.units)
    request = Request(args.model, units, layer.name, settings, None, args.weights, args.prior_file,
                      args.random_weights, args.device)
    idents = resolve(request).identities()  # every input checked once, before any work
    store = ResultsStore(args.store, all_atlases())  # a unit the shipped atlas holds is not rendered again
    store.check_writable()  # a read-only folder or a damaged database is reported before any work, not after it
    store.check_sound()
    todo = [u for u, i in zip(units, idents) if not store.has(i.key)]  # a damaged picture counts as missing
    skipped = len(units) - len(todo)
    t0 = time.perf_counter()
    failed: list[int] = []
    progress = Progress(len(todo), args.quiet)
    size: Optional[int] = int(args.batch) if args.batch != "auto" else None  # None with --ray: chosen per cluster
    if todo:
        try:
            with _stop_signals:
                if args.ray:
                    failed = run_ray(request, todo, size, store, progress, args.ray, args.workers)
                else:
                    size = size or auto_batch(request, len(todo), todo[0])
                    run_local(request, chunks(todo, size), store, progress)
        except KeyboardInterrupt:
            progress.close()
            print(f"\ninterrupted: {_written(progress)} written to {store.root}; run the same command again to "
                  "render the rest", file=sys.stderr, flush=True)
            return 130
        except UserError as exc:
            if progress.written:
                raise type(exc)(f"{exc} ({_written(progress)} stored before this)") from None
            raise
    progress.close()
    seconds = time.perf_counter() - t0
    rendered = progress.done
    summary = {"model": args.model, "layer": layer.name, "units": len(units), "rendered": rendered,
               "already_stored": skipped, "failed": failed, "seconds": seconds, "batch_size": size,
               "units_per_second": rendered / seconds if rendered and seconds > 0 else 0.0,
               "store": str(store.root), "ray": args.ray}
    if args.json:
        print(json_out.dumps(summary))
    else:
        print(f"precompute {args.model} {layer.name}: {rendered} rendered, {skipped} already stored, "
              f"{len(failed)} failed, in {seconds:.1f} s ({summary['units_per_second']:.2f} units/s) -> "
              f"{store.root}")
    if failed:
        raise UserError(f"{len(failed)} units failed after {RETRIES + 1} tries: "
                        f"{','.join(map(str, failed[:20]))}; run the same command again to retry them")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("precompute", help="render many units into the results store (resumable)")
    add_model_options(s, device="auto")
    s.add_argument("--layer", default=None, help="default: the output layer")
    s.add_argument("--units", required=True, help="all, or a list: 1,2,3 or 10-20")
    add_prior_options(s)
    s.add_argument("--iters", type=whole_arg("--iters"), default=None)
    s.add_argument("--seed", type=whole_arg("--seed", numbers.MAX_SEED), default=0)
    s.add_argument("--batch", default="auto", help="units per batch: auto (from free GPU memory) or a number")
    s.add_argument("--plain", action="store_true", help="the fp32 eager reference path instead of the fast one")
    add_store_option(s)
    s.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="spread batches over a Ray cluster: an address, auto, or local (a private instance)")
    s.add_argument("--workers", type=whole_arg("--workers"), default=None,
                   help="with --ray local: CPU workers (default: cores)")
    add_output_options(s, quiet="no progress bar")
    s.set_defaults(func=cmd_precompute)

