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

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from . import accel as _accel
from .accel import Accel
from .errors import RunCancelled
from .targets import LayerInfo, Target

DECAY = 0.99


@dataclass
class StepInfo:
    step: int  # 0-based
    n_iters: int
    activations: torch.Tensor  # (B,) on the CPU
    images: Optional[torch.Tensor]  # (B,3,H,W) RGB [0,1] on the CPU, only every `preview_every` steps


# A callback gets each step; returning False cancels the run (RunCancelled is raised, nothing is returned).
StepCallback = Callable[[StepInfo], Optional[bool]]


@dataclass
class BatchResult:
    images: torch.Tensor  # (B,3,H,W) RGB in [0,1], CPU
    activations: torch.Tensor  # (n_iters, B), CPU
    codes: torch.Tensor  # final codes, CPU
    seconds: float
    steps_done: torch.Tensor  # (B,) steps each sample ran before it stopped


def initial_codes(seeds: Sequence[int], code_shape: Sequence[int]) -> torch.Tensor:
    """h0 ~ N(0,1) drawn exactly like the original (np.random.seed(seed); np.random.normal), one seed per sample."""
    return torch.stack([torch.from_numpy(np.random.RandomState(s).normal(0, 1, tuple(code_shape)))
                        for s in seeds]).float()


def to_rgb(x_gen: torch.Tensor) -> torch.Tensor:
    """Generator convention (BGR, mean-subtracted, 0-255) -> RGB [0,1]: add the mean back and clamp."""
    mean = x_gen.new_tensor((123.0, 117.0, 104.0)).view(1, 3, 1, 1)
    return ((x_gen.flip(1) + mean) / 255.0).clamp(0, 1)


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


def make_step(generator: torch.nn.Module, target: Target, layer: LayerInfo, units: torch.Tensor,
              position: Optional[tuple[int, int]], lo: torch.Tensor, hi: torch.Tensor, decay: float):
    """step(h, active, lr) -> (activations, crop of G(h), next h, ok): one forward, backward and update.
    It only reads its inputs, so it can be captured in a CUDA graph and replayed."""
    def step(h, active, lr):
        h = h.detach().requires_grad_(True)
        x = generator(h).float()  # a no-op in fp32; lower-precision generators hand back fp32 images
        a = target.unit_activations(x, layer, units, position).float()
        (d,) = torch.autograd.grad(a.sum(), h)
        with torch.no_grad():
            new_h, ok = _update(h.detach(), d, active, lr, lo, hi, decay)
        return a.detach(), target.crop(x.detach()), new_h, ok
    return step


def run(generator: torch.nn.Module, target: Target, layer: LayerInfo, units: Sequence[int], *,
        lower: torch.Tensor, upper: torch.Tensor, seeds: Sequence[int], n_iters: int, lr_start: float,
        lr_end: float, decay: float = DECAY, position: Optional[tuple[int, int]] = None,
        init_codes: Optional[torch.Tensor] = None, callback: Optional[StepCallback] = None,
        preview_every: int = 0, accel: Optional[Accel] = None) -> BatchResult:
    """Optimise one code per (unit, seed) pair; units and seeds have the same length B.

    accel=None is the plain fp32 eager reference. An `accel.Accel` computes the passes faster (lower precision,
    channels-last, compile, a CUDA graph) with the same update rule; see accel.py and docs/performance.md.
    """
    if len(units) != len(seeds):
        raise ValueError("units and seeds must have the same length")
    if accel is not None:
        generator, target = _accel.prepare(generator, target, accel)
    dev = target.device
    t0 = time.perf_counter()
    h = (init_codes if init_codes is not None else initial_codes(seeds, lower.shape)).to(dev, torch.float32)
    lo, hi = lower.to(dev).unsqueeze(0), upper.to(dev).unsqueeze(0)
    unit_t = torch.as_tensor(list(units), device=dev)
    b = h.shape[0]
    active = torch.ones(b, dtype=torch.bool, device=dev)
    steps_done = torch.zeros(b, dtype=torch.long, device=dev)
    acts = torch.empty(n_iters, b, device=dev)  # filled on the device: no host sync per step
    check_every = accel.check_every if accel is not None else 1
    step = make_step(generator, target, layer, unit_t, position, lo, hi, decay)
    lrs: Sequence = [lr_at(i, n_iters, lr_start, lr_end) for i in range(n_iters)]
    if accel is not None and accel.cuda_graph and dev.type == "cuda" and callback is None and n_iters > 1:
        step, lrs = _accel.graph_step(step, h, active, lrs)
    threads = torch.get_num_threads()
    if accel is not None and accel.tune_threads and dev.type == "cpu":
        threads = _accel.pick_threads(step, h, active, lrs[0])
    last_view = None
    with _accel.cpu_threads(threads):
        for i in range(n_iters):
            a, view, h, ok = step(h, active, lrs[i])
            acts[i] = a
            last_view = view
            steps_done += ok.long()
            active = ok
            if callback is not None:
                images = (to_rgb(view).cpu() if preview_every and (i % preview_every == 0 or i == n_iters - 1)
                          else None)
                if callback(StepInfo(i, n_iters, acts[i].cpu().clone(), images)) is False:
                    raise RunCancelled("run cancelled")
            if (callback is not None or (i + 1) % check_every == 0) and not bool(active.any()):
                acts[i + 1:] = acts[i]  # every sample stopped: the rest of the curve is flat
                break
    images = to_rgb(last_view).cpu() if last_view is not None else torch.empty(0)
    return BatchResult(images, acts.cpu(), h.detach().cpu(), time.perf_counter() - t0, steps_done.cpu())
