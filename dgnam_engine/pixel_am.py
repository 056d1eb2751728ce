"""Pixel-space activation maximisation, the kind of baseline the paper compares against (Simonyan et al. 2013 with
the L2 decay, jitter and blur of Yosinski et al. 2015). Same inputs and result as `dgnam.run`, so the dashboard
can show both side by side: without a learned prior the image drifts into high-frequency patterns."""
from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .dgnam import BatchResult, StepCallback, StepInfo, lr_at, to_rgb
from .errors import RunCancelled
from .targets import RGB_MEAN, LayerInfo, Target

PIXEL_DEFAULTS = dict(lr_start=6.0, lr_end=1.0, decay=0.999, jitter=8, blur_every=4, blur_sigma=0.5)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(round(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def run(target: Target, layer: LayerInfo, units: Sequence[int], *, seeds: Sequence[int], n_iters: int,
        lr_start: float = PIXEL_DEFAULTS["lr_start"], lr_end: float = PIXEL_DEFAULTS["lr_end"],
        decay: float = PIXEL_DEFAULTS["decay"], jitter: int = PIXEL_DEFAULTS["jitter"],
        blur_every: int = PIXEL_DEFAULTS["blur_every"], blur_sigma: float = PIXEL_DEFAULTS["blur_sigma"],
        position: Optional[tuple[int, int]] = None, callback: Optional[StepCallback] = None,
        preview_every: int = 0) -> BatchResult:
    dev = target.device
    t0 = time.perf_counter()
    size = target.spec.input_size
    # Start near the mean image: small noise in the generator convention (BGR, mean-subtracted, 0-255).
    x = torch.stack([torch.from_numpy(np.random.RandomState(s).normal(0, 10, (3, size, size))) for s in seeds])
    x = x.float().to(dev)
    mean_bgr = x.new_tensor(RGB_MEAN[::-1]).view(1, 3, 1, 1)
    lo, hi = -mean_bgr, 255.0 - mean_bgr
    unit_t = torch.as_tensor(list(units), device=dev)
    acts = torch.empty(n_iters, len(units))
    # One jitter sequence per sample, from its own seed: a (unit, seed) pair gets the same picture in any batch.
    rngs = [np.random.RandomState(s) for s in seeds]
    for i in range(n_iters):
        shifts = [tuple(int(v) for v in r.randint(-jitter, jitter + 1, size=2)) if jitter else (0, 0) for r in rngs]
        x.requires_grad_(True)
        shifted = torch.stack([torch.roll(x[b], shifts=shifts[b], dims=(1, 2)) for b in range(len(shifts))])
        a = target.unit_activations(shifted, layer, unit_t, position)
        (g,) = torch.autograd.grad(a.sum(), x)
        with torch.no_grad():
            acts[i] = a.detach().float().cpu()
            m = g.abs().flatten(1).mean(1).clamp_min(1e-12)
            x = x.detach() + (lr_at(i, n_iters, lr_start, lr_end) / m).view(-1, 1, 1, 1) * g
            x = x * decay
            if blur_every and i % blur_every == 0:
                x = _blur(x, blur_sigma)
            x = torch.minimum(torch.maximum(x, lo), hi)
        if callback is not None:
            images = to_rgb(x).cpu() if preview_every and (i % preview_every == 0 or i == n_iters - 1) else None
            if callback(StepInfo(i, n_iters, acts[i].clone(), images)) is False:
                raise RunCancelled("run cancelled")
    return BatchResult(to_rgb(x.detach()).cpu(), acts, x.detach().cpu(), time.perf_counter() - t0,
                       torch.full((len(units),), n_iters))
