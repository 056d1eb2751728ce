"""DGN-AM as the paper's own code runs it (act_max.py), batched.

Per step i of n (spec section 1.3 and 7):
    lr_i = lr_start + (lr_end - lr_start) * i / n
    d    = d activation(unit, crop(G(h))) / dh
    h    = h + lr_i * d / mean|d|        (normalised per sample)
    h    = clamp(h, lower, upper)        ([0, bound] for the original priors)
    h    = 0.99 * h
A sample whose gradient is zero or not finite stops there, as the original loop breaks. The returned image is
the crop of G(h) from the last forward pass, i.e. the image at the start of the last step.
"""
from __future__ import annotations

import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from . import accel as _accel
from .accel import Accel
from .convention import gen_to_rgb
from .errors import RunCancelled
from .targets import LayerInfo, Target

DECAY = 0.99
log = logging.getLogger(__name__)


@dataclass
class StepInfo:
    step: int  # 0-based
    n_iters: int
    activations: torch.Tensor  # (B,) on the CPU
    images: Optional[torch.Tensor]  # (B,3,H,W) RGB [0,1] on the CPU at preview steps (every `preview_every`
    # steps and the last; when the host reads several steps at once, only the latest preview step among them)


# A callback gets each step; returning False cancels the run (RunCancelled is raised, nothing is returned).
StepCallback = Callable[[StepInfo], Optional[bool]]


@dataclass
class BatchResult:
    images: torch.Tensor  # (B,3,H,W) RGB in [0,1], CPU
    activations: torch.Tensor  # (n_iters, B), CPU
    codes: torch.Tensor  # final codes, CPU
    seconds: float
    steps_done: torch.Tensor  # (B,) steps each sample ran before it stopped
    graph_captured: bool = False  # the steps ran as replays of one captured CUDA graph
    batch_size: int = 0  # the most samples computed at once: less than B after an out-of-memory back-off
    cpu_threads: Optional[int] = None  # intra-op threads of each pass on a CPU (accel.cpu_pass_threads)


def initial_codes(seeds: Sequence[int], code_shape: Sequence[int]) -> torch.Tensor:
    """h0 ~ N(0,1) drawn exactly like the original (np.random.seed(seed); np.random.normal), one seed per sample."""
    return torch.stack([torch.from_numpy(np.random.RandomState(s).normal(0, 1, tuple(code_shape)))
                        for s in seeds]).float()


def lr_at(i: int, n: int, lr_start: float, lr_end: float) -> float:
    return lr_start + (lr_end - lr_start) * i / n


def _update(h: torch.Tensor, d: torch.Tensor, active: torch.Tensor, lr, lo: torch.Tensor, hi: torch.Tensor,
            decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the rule for every sample; a sample whose gradient is zero or not finite keeps its code."""
    m = d.abs().flatten(1).mean(1)
    ok = active & torch.isfinite(m) & (m > 0)
    scale = torch.where(ok, lr / torch.where(ok, m, torch.ones_like(m)), torch.zeros_like(m))
    new_h = h + scale.view(-1, *([1] * (h.dim() - 1))) * d
    new_h = torch.minimum(torch.maximum(new_h, lo), hi)
    if 0 < decay < 1:
        new_h = new_h * decay
    keep = ok.view(-1, *([1] * (h.dim() - 1)))
    return torch.where(keep, new_h, h), ok


class CodeParam:
    """The DGN-AM parameterisation: a generator code h, the picture G(h), and the original update rule."""

    def __init__(self, generator: torch.nn.Module, lo: torch.Tensor, hi: torch.Tensor, decay: float = DECAY):
        self.generator, self.lo, self.hi, self.decay = generator, lo, hi, decay

    def render(self, h: torch.Tensor) -> torch.Tensor:
        return self.generator(h).float()  # a no-op in fp32; lower-precision generators hand back fp32 images

    def update(self, h, d, active, lr) -> tuple[torch.Tensor, torch.Tensor]:
        return _update(h, d, active, lr, self.lo, self.hi, self.decay)

    def view(self, target: Target, x: torch.Tensor, new_h: torch.Tensor) -> torch.Tensor:
        return target.crop(x.detach())  # the picture of this step's forward pass, as the original returns it

    def select(self, b: int) -> "CodeParam":
        return self


def make_step(param, objective, target: Target):
    """step(h, active, lr) -> (objective values, picture, next h, ok): one forward, backward and update of the
    parameterisation `param` (a generator code, or pixels) towards `objective` (objectives.py). It returns its new
    state rather than writing into `h`, so it can be captured in a CUDA graph and replayed; it is not pure, though:
    `param` may keep state of its own between steps (the pixel parameterisation's jitter and blur schedule)."""
    def step(h, active, lr):
        h = h.detach().requires_grad_(True)
        x = param.render(h)
        a = objective(target, x).float()
        (d,) = torch.autograd.grad(a.sum(), h)
        with torch.no_grad():
            new_h, ok = param.update(h.detach(), d, active, lr)
        return a.detach(), param.view(target, x, new_h), new_h, ok
    return step


def per_sample_step(param, objective, target: Target, b: int, pool):
    """The same step computed one sample at a time: on `pool`'s threads side by side, or in turn without one. On
    a CPU the kernels' arithmetic depends on the batch shape and on the thread count, and 200 normalised steps
    amplify a last-bit difference into another picture (measured: bee alone and beside two other classes
    differed by 42-72/255 per pixel, and by 76/255 between 1 and 2 threads). One sample per pass, each pass with
    the machine's fixed thread count (accel.cpu_pass_threads), makes a sample's picture independent of its batch
    mates and of the machine's load."""
    steps = [make_step(param.select(j), objective.select(j), target) for j in range(b)]

    def step(h, active, lr):
        if pool is None:
            parts = [s(h[j:j + 1], active[j:j + 1], lr) for j, s in enumerate(steps)]
        else:
            futures = [pool.submit(s, h[j:j + 1], active[j:j + 1], lr) for j, s in enumerate(steps)]
            parts = [f.result() for f in futures]
        return tuple(torch.cat(p) for p in zip(*parts))
    return step


def run(generator: torch.nn.Module, target: Target, layer: LayerInfo, units: Sequence[int], *,
        lower: torch.Tensor, upper: torch.Tensor, seeds: Sequence[int], n_iters: int, lr_start: float,
        lr_end: float, decay: float = DECAY, position: Optional[tuple[int, int]] = None,
        init_codes: Optional[torch.Tensor] = None, callback: Optional[StepCallback] = None,
        preview_every: int = 0, accel: Optional[Accel] = None, objective=None,
        per_sample: Optional[bool] = None, views: int = 0, bn_weight: float = 0.0) -> BatchResult:
    """Optimise one code per (unit, seed) pair; units and seeds have the same length B. `objective` (see
    objectives.py) replaces the default "unit b of `layer` at `position` for sample b" with another one, e.g. a
    weighted sum of units. `views` and `bn_weight` choose a variant's objective (variants.py; 0 and 0: the
    paper's); the update rule is the same.

    accel=None is the plain fp32 eager reference. An `accel.Accel` computes the passes faster (lower precision,
    channels-last, compile, a CUDA graph) with the same update rule; see accel.py and docs/performance.md.

    The callback sees every step, in order, but the host reads the device only every `accel.check_every` steps
    (k; 1 without accel): it then gets the k steps since the last read at once, a preview image with the latest
    preview step among them, and returning False stops the run at that read, so within k steps. Without a
    callback, a batch that runs out of GPU memory is split in halves that run one after the other.
    """
    from .objectives import UnitObjective

    if len(units) != len(seeds):
        raise ValueError("units and seeds must have the same length")
    base = target  # before the fast path folds its batch norms: the batch-norm term reads their statistics
    if accel is not None:
        if views and accel.cuda_graph:  # a graph would replay the first step's views every step
            accel = replace(accel, cuda_graph=False)
        generator, target = _accel.prepare(generator, target, accel)
    h0 = init_codes if init_codes is not None else initial_codes(seeds, lower.shape)
    dev = target.device
    param = CodeParam(generator, lower.to(dev).unsqueeze(0), upper.to(dev).unsqueeze(0), decay)

    def one_batch(h0_part: torch.Tensor, rows: Sequence[int]) -> BatchResult:
        lo, hi = rows[0], rows[-1] + 1  # samples lo..hi-1 of the batch: their units, or their part of `objective`
        obj = (objective.part(lo, hi) if objective is not None
               else UnitObjective(layer, torch.as_tensor(list(units[lo:hi]), device=dev), position))
        if views or bn_weight:
            from .variants import wrap

            obj = wrap(obj, list(seeds[lo:hi]), base, target, layer, views, bn_weight)
        return optimise(param, obj, target, h0_part, n_iters=n_iters, lr_start=lr_start, lr_end=lr_end,
                        callback=callback, preview_every=preview_every, accel=accel, per_sample=per_sample)

    if callback is not None:  # a live view's batch is small, and its progress must stay one batch
        return one_batch(h0, list(range(len(units))))
    return _halving_on_oom(one_batch, h0, list(range(len(units))), target.device)


def _halving_on_oom(one_batch, h0: torch.Tensor, units: list[int], device: torch.device) -> BatchResult:
    """one_batch on all of `units` (the batch's row numbers); after an out-of-memory error, on each half in turn
    (recursively)."""
    try:
        return one_batch(h0, units)
    except torch.OutOfMemoryError as exc:
        if len(units) == 1:
            raise
        reason = (str(exc).strip().splitlines() or ["out of memory"])[0]
    # outside the except block: the traceback (and the tensors its frames hold) is gone before the retry
    log.warning("out of memory with a batch of %d, running two halves instead: %s", len(units), reason)
    _accel.free_memory(device)
    m = len(units) // 2
    first = _halving_on_oom(one_batch, h0[:m], units[:m], device)
    second = _halving_on_oom(one_batch, h0[m:], units[m:], device)
    return BatchResult(torch.cat([first.images, second.images]),
                       torch.cat([first.activations, second.activations], 1),
                       torch.cat([first.codes, second.codes]), first.seconds + second.seconds,
                       torch.cat([first.steps_done, second.steps_done]),
                       first.graph_captured and second.graph_captured, max(first.batch_size, second.batch_size),
                       first.cpu_threads)


def optimise(param, objective, target: Target, h0: torch.Tensor, *, n_iters: int, lr_start: float,
             lr_end: float, callback: Optional[StepCallback] = None, preview_every: int = 0,
             accel: Optional[Accel] = None, per_sample: Optional[bool] = None) -> BatchResult:
    """The one loop of every method (DGN-AM on a generator code, the pixel baseline on pixels), for one batch.

    Per-step results go to buffers on the device (activations, the latest preview picture); the host reads them
    every k steps. On a GPU the step is a CUDA graph replay of the whole batch and the buffer writes are queued
    behind it, so nothing waits for the GPU between reads; on a CPU each sample gets its own pass
    (`per_sample_step`) with the machine's fixed thread count, the passes side by side where the cores allow more
    than one, so the same request gives the same picture whatever its batch mates and the machine's load. `per_sample` overrides that choice (None: by device)."""
    dev = target.device
    t0 = time.perf_counter()
    h = h0.to(dev, torch.float32)
    b = h.shape[0]
    active = torch.ones(b, dtype=torch.bool, device=dev)
    steps_done = torch.zeros(b, dtype=torch.long, device=dev)
    acts = torch.empty(n_iters, b, device=dev)  # device buffer: one row per step
    preview: Optional[torch.Tensor] = None  # device buffer: the picture of the latest preview step
    preview_step = -1
    k = max(1, accel.check_every) if accel is not None else 1  # steps between host reads
    reported = 0  # steps handed to the callback so far
    batched = b == 1 or (dev.type == "cuda" if per_sample is None else not per_sample)
    # every CPU pass with the machine's fixed thread count, whatever the process's setting: see per_sample_step
    threads = _accel.cpu_pass_threads() if dev.type == "cpu" else torch.get_num_threads()
    lanes = min(b, _accel.cpu_lanes(threads)) if dev.type == "cpu" else b
    pool = None if batched or lanes == 1 else ThreadPoolExecutor(
        lanes, "dgnam-sample", initializer=torch.set_num_threads, initargs=(threads,))
    step = make_step(param, objective, target) if batched else per_sample_step(param, objective, target, b, pool)
    lrs: Sequence = [lr_at(i, n_iters, lr_start, lr_end) for i in range(n_iters)]
    captured = False
    last_view = None
    with _accel.fast_kernels(dev, accel):
        if accel is not None and accel.cuda_graph and dev.type == "cuda" and n_iters > 1:
            step, lrs, captured = _accel.graph_step(step, h, active, lrs)
        with _accel.cpu_threads(threads), (pool or contextlib.nullcontext()):
            for i in range(n_iters):
                a, view, h, ok = step(h, active, lrs[i])
                acts[i] = a
                last_view = view  # a graph's output buffer: overwritten by the next replay
                steps_done += ok.long()
                active = ok
                if callback is not None and preview_every and (i % preview_every == 0 or i == n_iters - 1):
                    preview = view.clone() if preview is None else preview.copy_(view)
                    preview_step = i
                if (i + 1) % k and i != n_iters - 1:
                    continue
                # a host read: the only point where the host waits for the device
                if callback is not None:
                    _report(callback, acts, reported, i + 1, n_iters, preview, preview_step)
                    reported = i + 1
                if not bool(active.any()):
                    acts[i + 1:] = acts[i]  # every sample stopped: the rest of the curve is flat
                    break
    images = gen_to_rgb(last_view).cpu() if last_view is not None else torch.empty(0)
    return BatchResult(images, acts.cpu(), h.detach().cpu(), time.perf_counter() - t0, steps_done.cpu(),
                       graph_captured=captured, batch_size=b if batched else 1,
                       cpu_threads=threads if dev.type == "cpu" else None)


def _report(callback: StepCallback, acts: torch.Tensor, start: int, end: int, n_iters: int,
            preview: Optional[torch.Tensor], preview_step: int) -> None:
    """Hand steps start..end-1 to the callback from one copy of the buffers; RunCancelled if it says stop."""
    host = acts[start:end].cpu()
    image = gen_to_rgb(preview).cpu() if preview is not None and preview_step >= start else None
    for j in range(start, end):
        info = StepInfo(j, n_iters, host[j - start].clone(), image if j == preview_step else None)
        if callback(info) is False:
            raise RunCancelled("run cancelled")
