"""Pixel-space activation maximisation, the kind of baseline the paper compares against (Simonyan et al. 2013 with
the L2 decay, jitter and blur of Yosinski et al. 2015). It runs the same loop as DGN-AM (`dgnam.optimise`) with a
different parameterisation: the pixels themselves instead of a generator's code. Without a learned prior the image
drifts into high-frequency patterns, which is what the dashboard shows side by side."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import accel as _accel
from .dgnam import BatchResult, StepCallback, optimise
from .objectives import UnitObjective
from .convention import gen_pixel_bounds
from .targets import LayerInfo, Target

PIXEL_DEFAULTS = dict(lr_start=6.0, lr_end=1.0, decay=0.999, jitter=8, blur_every=4, blur_sigma=0.5)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(round(2 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


class PixelParam:
    """Pixels in the generator convention (BGR, mean-subtracted, 0-255) at the target's input size. Each step shows
    the target a randomly shifted copy (jitter, from each sample's own seed), then steps along the normalised
    gradient, decays, blurs every few steps and clips to valid pixel values."""

    def __init__(self, seeds: Sequence[int], lo: torch.Tensor, hi: torch.Tensor, *, decay: float, jitter: int,
                 blur_every: int, blur_sigma: float):
        self.rngs = [np.random.RandomState(s) for s in seeds]
        self.lo, self.hi, self.decay = lo, hi, decay
        self.jitter, self.blur_every, self.blur_sigma = jitter, blur_every, blur_sigma
        self.i = 0  # steps taken (the blur schedule)

    def render(self, x: torch.Tensor) -> torch.Tensor:
        j = self.jitter
        shifts = [tuple(int(v) for v in r.randint(-j, j + 1, size=2)) if j else (0, 0) for r in self.rngs]
        return torch.stack([torch.roll(x[b], shifts=shifts[b], dims=(1, 2)) for b in range(x.shape[0])])

    def update(self, x, g, active, lr) -> tuple[torch.Tensor, torch.Tensor]:
        m = g.abs().flatten(1).mean(1).clamp_min(1e-12)
        x = (x + (lr / m).view(-1, 1, 1, 1) * g) * self.decay
        if self.blur_every and self.i % self.blur_every == 0:
            x = _blur(x, self.blur_sigma)
        self.i += 1
        return torch.minimum(torch.maximum(x, self.lo), self.hi), active  # pixels never stop

    def view(self, target: Target, x: torch.Tensor, new_x: torch.Tensor) -> torch.Tensor:
        return new_x  # the pixels after the step: the last one is the result

    def select(self, b: int) -> "PixelParam":
        one = PixelParam([0], self.lo, self.hi, decay=self.decay, jitter=self.jitter, blur_every=self.blur_every,
                         blur_sigma=self.blur_sigma)
        one.rngs = [self.rngs[b]]
        return one


def run(target: Target, layer: LayerInfo, units: Sequence[int], *, seeds: Sequence[int], n_iters: int,
        lr_start: float = PIXEL_DEFAULTS["lr_start"], lr_end: float = PIXEL_DEFAULTS["lr_end"],
        decay: float = PIXEL_DEFAULTS["decay"], jitter: int = PIXEL_DEFAULTS["jitter"],
        blur_every: int = PIXEL_DEFAULTS["blur_every"], blur_sigma: float = PIXEL_DEFAULTS["blur_sigma"],
        position: Optional[tuple[int, int]] = None, callback: Optional[StepCallback] = None,
        preview_every: int = 0, objective=None, accel=None) -> BatchResult:
    """`accel` (accel.Accel or None: the plain fp32 path) computes the target's passes faster, as for DGN-AM."""
    target = _accel.prepare_target(target, accel)
    dev = target.device
    size = target.spec.input_size
    # Start near the mean image: small noise in the generator convention, one start per sample from its seed.
    x0 = torch.stack([torch.from_numpy(np.random.RandomState(s).normal(0, 10, (3, size, size))) for s in seeds])
    lo, hi = gen_pixel_bounds(dev)
    param = PixelParam(seeds, lo, hi, decay=decay, jitter=jitter, blur_every=blur_every,
                       blur_sigma=blur_sigma)
    obj = objective or UnitObjective(layer, torch.as_tensor(list(units), device=dev), position)
    return optimise(param, obj, target, x0.float(), n_iters=n_iters, lr_start=lr_start, lr_end=lr_end,
                    callback=callback, preview_every=preview_every, accel=accel)
