"""DGN-AM variants (issue 26): the paper's update rule (normalised step, clip, decay 0.99: dgnam._update) on
another objective. The paper's method is Settings() with views=0 and bn_weight=0, unchanged.

- views = V > 0, transformation robustness (as MACO and Lucent do): each step the target sees V random views of
  G(h), each a crop of 75-100% of the picture's side at a random place, resized to the target's input, with light
  Gaussian noise, and the unit's activation is averaged over them, so the code cannot win with pixel patterns that
  only work at one exact position and scale. The draws come from (seed, step) alone: the same request gives the
  same picture, alone or in a batch.
- bn_weight = W > 0, a data-free natural-image term (DeepInversion, Yin et al. 2020): minus W times how far the
  per-channel mean and standard deviation at every batch norm of the target are from its running statistics,
  in units of the running standard deviation:
      sum over batch norms of ||(mean(y) - mu) / s||_2 + ||std(y) / s - 1||_2    (y: the norm's input)
  The fast path folds the norms into their convolutions (batchnorm_fold.py); there the folded convolution's
  output is z = g (y - mu) / s + b, so (mean(z) - b) / |g| and std(z) / |g| are the same two numbers: the term is
  read from the norm's input where the norm is still there and from the folded convolution's output where it is
  not, and is the same on both paths.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import batchnorm_fold, truncate
from .errors import UserError
from .objectives import UnitObjective
from .targets import LayerInfo, Target

MAX_VIEWS = 16
MAX_BN_WEIGHT = 1000.0
VIEW_SIDE = (0.75, 1.0)  # a view's side as a fraction of G(h)'s side
VIEW_NOISE = 4.0  # the views' Gaussian noise, std in the generator convention's 0-255 units (1.6% of the range)

# The named variants the bench measures (bench/bench_recognition.py) and the command line's --variant.
# views 2: a target pass costs about what the generator's does, so 2 views keep a step near 1.5x the paper's;
# bn_weight 0.02: at a random start the term's gradient is ~25x the class logit's (mean |d/dh| 0.136 against
# 0.0054 on Lite0 + lite0-b3), so 0.02 makes it about half the activation's pull.
PRESETS = {
    "paper": {},
    "robust": {"views": 2},
    "bn": {"bn_weight": 0.02},
    "robust-bn": {"views": 2, "bn_weight": 0.02},
}


def problem(views, bn_weight) -> Optional[str]:
    if not isinstance(views, int) or isinstance(views, bool) or not 0 <= views <= MAX_VIEWS:
        return f"views must be a whole number from 0 to {MAX_VIEWS}, not {views}"
    if not (isinstance(bn_weight, (int, float)) and math.isfinite(bn_weight) and 0 <= bn_weight <= MAX_BN_WEIGHT):
        return f"the batch-norm weight must be between 0 and {MAX_BN_WEIGHT:g}, not {bn_weight}"
    return None


def draw_views(x_gen: torch.Tensor, seeds: Sequence[int], step: int, n: int, size: int) -> torch.Tensor:
    """(B * n, 3, size, size): sample b's n views at `step`, drawn from (seeds[b], step) only."""
    out = []
    s = x_gen.shape[-1]
    for b, seed in enumerate(seeds):
        rng = np.random.RandomState([int(seed) & 0xFFFFFFFF, step, 26])
        sides = rng.uniform(*VIEW_SIDE, size=n)
        corners = rng.uniform(0, 1, size=(n, 2))
        noise = torch.from_numpy(rng.normal(0, VIEW_NOISE, size=(n, 3, size, size)).astype(np.float32))
        for k in range(n):
            c = max(8, int(round(sides[k] * s)))
            top, left = (int(corners[k, 0] * (s - c)), int(corners[k, 1] * (s - c)))
            v = x_gen[b:b + 1, :, top:top + c, left:left + c]
            if c != size:
                v = F.interpolate(v, size=(size, size), mode="bilinear", align_corners=False)
            out.append(v + noise[k].to(v.device, v.dtype))
    return torch.cat(out)


@dataclass
class _Norm:
    """One batch norm of the unfolded target: where to read it and its running statistics."""

    bn: str  # the norm's name in the target's model
    conv: Optional[str]  # the convolution it folds into, if any
    mean: torch.Tensor
    std: torch.Tensor  # sqrt(running_var + eps)
    gain: torch.Tensor  # |weight| (ones without affine)
    bias: torch.Tensor


def norms_of(base: Target) -> list[_Norm]:
    """Every eval batch norm of the (unfolded) target, with the convolution the fast path folds it into."""
    size = base.spec.input_size
    example = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(base.device)
    pairs = {bn: conv for conv, bn in batchnorm_fold._pairs(base.model, example,
                                                           {i.module for i in base.layers.values()})}
    out = []
    for name, m in base.model.named_modules():
        if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None:
            std = torch.sqrt(m.running_var.float() + m.eps)
            gain = m.weight.detach().float().abs() if m.affine else torch.ones_like(std)
            bias = m.bias.detach().float() if m.affine else torch.zeros_like(std)
            out.append(_Norm(name, pairs.get(name), m.running_mean.float(), std, gain, bias))
    return out


class BNStats:
    """A private copy of the target truncated at `layer`, with hooks that read every batch norm's statistics
    during the pass that also gives the unit's activation (one forward, one backward). The hooks write to
    thread-local lists: the per-sample passes of one run may run side by side in threads."""

    def __init__(self, base: Target, target: Target, layer: LayerInfo):
        lm = target.layer_model(layer)
        self.model = truncate.private_copy(lm)
        in_lm = {id(m): n for n, m in lm.named_modules()}
        full = dict(target.model.named_modules())
        copies = dict(self.model.named_modules())
        self._local = threading.local()
        self.count = 0
        dev = target.device
        for norm in norms_of(base):
            m = full.get(norm.bn)
            if isinstance(m, nn.BatchNorm2d) and id(m) in in_lm:  # the norm is there: read its input
                centre, scale = norm.mean, norm.std
                copies[in_lm[id(m)]].register_forward_pre_hook(self._hook(centre.to(dev), scale.to(dev), True))
            elif norm.conv is not None and id(full.get(norm.conv)) in in_lm:  # folded: read the convolution's output
                centre, scale = norm.bias, norm.gain.clamp_min(1e-12)
                copies[in_lm[id(full[norm.conv])]].register_forward_hook(
                    self._hook(centre.to(dev), scale.to(dev), False))
            else:
                continue
            self.count += 1

    def _hook(self, centre: torch.Tensor, scale: torch.Tensor, pre: bool):
        def record(_m, args, out=None):
            self._local.values.append(((args[0] if pre else out).float(), centre, scale))
        if pre:
            return lambda m, args: record(m, args)
        return lambda m, args, out: record(m, args, out)

    def forward(self, x_model: torch.Tensor, per_sample: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(layer output, (B,) term): each sample's statistics over its own `per_sample` views."""
        self._local.values = []
        out = self.model(x_model)
        total = x_model.new_zeros(x_model.shape[0] // per_sample, dtype=torch.float32)
        for y, centre, scale in self._local.values:
            c = y.shape[1]
            g = y.reshape(-1, per_sample, c, y.shape[2] * y.shape[3]).transpose(1, 2).flatten(2)  # (B, C, V*H*W)
            mean, std = g.mean(2), g.std(2)
            total = total + ((mean - centre) / scale).norm(dim=1) + (std / scale - 1).norm(dim=1)
        self._local.values = []
        return out, total


@dataclass
class VariantObjective:
    """The unit's activation averaged over views of G(h) (views > 0), minus bn_weight times the batch-norm term
    (bn is not None). Counts its own steps: called once per step, as make_step does."""

    inner: object  # objectives.UnitObjective or SumObjective
    seeds: list
    views: int
    bn_weight: float
    bn: Optional[BNStats]
    step: int = field(default=0)

    def __call__(self, target: Target, x_gen: torch.Tensor) -> torch.Tensor:
        n = max(1, self.views)
        x = draw_views(x_gen, self.seeds, self.step, n, target.spec.input_size) if self.views else x_gen
        self.step += 1
        inner = self.inner
        if isinstance(inner, UnitObjective):  # each view asks for its sample's unit
            inner = UnitObjective(inner.layer, inner.units.repeat_interleave(n), inner.position)
        if self.bn is None:
            return inner(target, x).view(-1, n).mean(1)
        if not isinstance(inner, UnitObjective):
            raise UserError("the batch-norm term works with one unit per picture, not a combined objective")
        out, term = self.bn.forward(target.preprocess(x), n)
        idx = torch.arange(out.shape[0], device=out.device)
        if inner.layer.kind == "fc":
            act = out[idx, inner.units]
        elif inner.layer.kind == "tokens":
            act = out[idx, :, inner.units].mean(1)
        else:
            r, c = inner.position if inner.position is not None else inner.layer.centre()
            act = out[idx, inner.units, r, c]
        act = act.float().view(-1, n).mean(1)
        # equal to the activation (what the run reports as the unit's), with the gradient of act - W * term
        return act - self.bn_weight * (term - term.detach())

    def select(self, b: int) -> "VariantObjective":
        return VariantObjective(self.inner.select(b), [self.seeds[b]], self.views, self.bn_weight, self.bn)


def wrap(objective, seeds: Sequence[int], base: Target, target: Target, layer: LayerInfo, views: int,
         bn_weight: float) -> VariantObjective:
    """`objective` as the variant asks (views and/or the batch-norm term), on `target` (the run's target, fast or
    plain), with the batch norms' statistics from `base` (the target before the fast path folded them)."""
    bn = None
    if bn_weight > 0:
        bn = BNStats(base, target, layer)
        if bn.count == 0:
            raise UserError(f"{base.name} has no batch norms before {layer.name}: the batch-norm term needs them")
    return VariantObjective(objective, list(seeds), views, float(bn_weight), bn)
