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


def run(generator: torch.nn.Module, target: Target, layer: LayerInfo, units: Sequence[int], *,
        lower: torch.Tensor, upper: torch.Tensor, seeds: Sequence[int], n_iters: int, lr_start: float,
        lr_end: float, decay: float = DECAY, position: Optional[tuple[int, int]] = None,
        init_codes: Optional[torch.Tensor] = None, callback: Optional[StepCallback] = None,
        preview_every: int = 0) -> BatchResult:
    """Optimise one code per (unit, seed) pair; units and seeds have the same length B."""
    if len(units) != len(seeds):
        raise ValueError("units and seeds must have the same length")
    dev = target.device
    t0 = time.perf_counter()
    h = (init_codes if init_codes is not None else initial_codes(seeds, lower.shape)).to(dev)
    lo, hi = lower.to(dev).unsqueeze(0), upper.to(dev).unsqueeze(0)
    unit_t = torch.as_tensor(list(units), device=dev)
    b = h.shape[0]
    active = torch.ones(b, dtype=torch.bool, device=dev)
    steps_done = torch.zeros(b, dtype=torch.long, device=dev)
    acts = torch.empty(n_iters, b)
    last_view = None
    for i in range(n_iters):
        h.requires_grad_(True)
        x = generator(h)
        a = target.unit_activations(x, layer, unit_t, position)
        (d,) = torch.autograd.grad(a.sum(), h)
        with torch.no_grad():
            acts[i] = a.detach().float().cpu()
            view = target.crop(x.detach())
            last_view = view
            m = d.abs().flatten(1).mean(1)
            ok = active & torch.isfinite(m) & (m > 0)
            step = lr_at(i, n_iters, lr_start, lr_end)
            scale = torch.where(ok, step / torch.where(ok, m, torch.ones_like(m)), torch.zeros_like(m))
            new_h = h.detach() + scale.view(-1, *([1] * (h.dim() - 1))) * d
            new_h = torch.minimum(torch.maximum(new_h, lo), hi)
            if 0 < decay < 1:
                new_h = new_h * decay
            keep = ok.view(-1, *([1] * (h.dim() - 1)))
            h = torch.where(keep, new_h, h.detach())
            steps_done += ok.long()
            active = ok
        if callback is not None:
            images = to_rgb(view).cpu() if preview_every and (i % preview_every == 0 or i == n_iters - 1) else None
            if callback(StepInfo(i, n_iters, acts[i].clone(), images)) is False:
                raise RunCancelled("run cancelled")
        if not bool(active.any()):
            acts[i + 1:] = acts[i]  # every sample stopped: the rest of the curve is flat
            break
    images = to_rgb(last_view).cpu() if last_view is not None else torch.empty(0)
    return BatchResult(images, acts, h.detach().cpu(), time.perf_counter() - t0, steps_done.cpu())
