"""MACO (Fel et al., NeurIPS 2023): pixel-space activation maximisation with the image's Fourier magnitude fixed
to that of natural photos and only its phase optimised. It runs the same loop as DGN-AM and the pixel baseline
(`dgnam.optimise`) with a third parameterisation, `PhaseParam`:

    x = sigmoid(C · standardise(irfft2(m · exp(i · standardise(phi)))))      (RGB in [0, 1])

m is the mean magnitude spectrum of real photos per decorrelated colour channel and C their colour "square root"
(assets/maco/, made by scripts/make_maco_spectrum.py). Each step the unit sees several random crops of x, resized
to the model's input and noised; the objective is their mean, and phi follows NAdam. The gradient that reaches x
is accumulated over the run: the alpha map (where in the picture the unit's evidence lies)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .assets import ASSETS as _ASSETS
from .convention import rgb_to_gen
from . import accel as _accel
from .dgnam import BatchResult, StepCallback, optimise
from .objectives import UnitObjective
from .targets import LayerInfo, Target

ASSETS = _ASSETS / "maco"
MAGNITUDE_FILE = ASSETS / "magnitude.npy"  # (3, S, S//2 + 1) float16: mean |rfft2| per decorrelated channel
COLOUR_FILE = ASSETS / "colour.npy"  # (3, 3) float32: decorrelated channels -> RGB

# NAdam with lr 1.0 (Horama); 256 steps (xplique's default); 6 crops per step (Horama). Crops of 50-100% of the
# picture: the picture is the model's input size here, like the other methods' (Horama's 20-25% of 1280 px is
# also about the model's input), so each crop shows the unit its evidence near the scale it was trained at.
MACO_DEFAULTS = dict(n_iters=256, lr=1.0, crops=6, box=(0.5, 1.0), centre_std=0.15, noise=(0.05, 0.10))
BETAS, EPS, MOMENTUM_DECAY = (0.9, 0.999), 1e-8, 4e-3  # torch.optim.NAdam's defaults


def load_spectrum(size: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(magnitude (3, size, size//2 + 1), colour matrix (3, 3)) for pictures of `size` px. The shipped spectrum
    is resized bilinearly (around its zero frequency) when `size` differs from the size it was measured at."""
    mag = torch.from_numpy(np.load(MAGNITUDE_FILE).astype(np.float32))
    colour = torch.from_numpy(np.load(COLOUR_FILE).astype(np.float32))
    if mag.shape[-2] != size:
        centred = torch.fft.fftshift(mag, dim=-2)  # rows run -f..f, so resizing keeps f = 0 where it is
        centred = F.interpolate(centred[None], size=(size, size // 2 + 1), mode="bilinear", align_corners=False)[0]
        mag = torch.fft.ifftshift(centred, dim=-2)
    return mag.to(device), colour.to(device)


def initial_phases(seeds: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """phi0 ~ N(0, 1) from numpy's RandomState(seed), one per sample, as the other methods draw their starts."""
    return torch.stack([torch.from_numpy(np.random.RandomState(s).normal(0, 1, tuple(shape))) for s in seeds]).float()


def _standardise(t: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, t.dim()))
    return (t - t.mean(dims, keepdim=True)) / (t.std(dims, keepdim=True) + 1e-8)


@dataclass
class _Nadam:
    """NAdam's running state for one (batch of) phase tensor(s), as torch.optim.NAdam computes it, ascending."""

    m: Optional[torch.Tensor] = None
    v: Optional[torch.Tensor] = None
    mu_product: float = 1.0
    t: int = 0

    def step(self, p: torch.Tensor, g: torch.Tensor, lr) -> torch.Tensor:
        b1, b2 = BETAS
        if self.m is None:
            self.m, self.v = torch.zeros_like(p), torch.zeros_like(p)
        self.t += 1
        mu = b1 * (1 - 0.5 * 0.96 ** (self.t * MOMENTUM_DECAY))
        mu_next = b1 * (1 - 0.5 * 0.96 ** ((self.t + 1) * MOMENTUM_DECAY))
        self.mu_product *= mu
        self.m = b1 * self.m + (1 - b1) * g
        self.v = b2 * self.v + (1 - b2) * g * g
        denom = (self.v / (1 - b2 ** self.t)).sqrt() + EPS
        direction = (mu_next * self.m / (1 - self.mu_product * mu_next) + (1 - mu) * g / (1 - self.mu_product))
        return p + lr * direction / denom  # ascent: g is the gradient of what is maximised


class PhaseParam:
    """The MACO parameterisation: the phase of a picture's spectrum, with each sample's crops and noise drawn from
    its own seed (so a sample gets the same picture alone and in a batch), NAdam, and the alpha map."""

    def __init__(self, seeds: Sequence[int], magnitude: torch.Tensor, colour: torch.Tensor, input_size: int, *,
                 crops: int, box: tuple[float, float], centre_std: float, noise: tuple[float, float]):
        self.seeds = list(seeds)
        self.rngs = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.magnitude, self.colour, self.input_size = magnitude, colour, input_size
        self.crops, self.box, self.centre_std, self.noise = crops, box, centre_std, noise
        self.nadam = _Nadam()
        self.alpha: Optional[torch.Tensor] = None  # (B, H, W): accumulated |d objective / d picture|
        self.children: dict[int, PhaseParam] = {}

    def image(self, phase: torch.Tensor) -> torch.Tensor:
        """The picture of `phase`, RGB in [0, 1], (B, 3, S, S)."""
        size = self.magnitude.shape[-2]
        spectrum = torch.polar(self.magnitude.expand_as(phase), _standardise(phase))
        x = _standardise(torch.fft.irfft2(spectrum, s=(size, size), norm="ortho"))
        x = torch.einsum("ij,bjhw->bihw", self.colour, x)
        return torch.sigmoid(x)

    def _accumulate(self, g: torch.Tensor) -> None:
        a = g.detach().abs().sum(1)
        self.alpha = a if self.alpha is None else self.alpha + a

    def render(self, phase: torch.Tensor) -> torch.Tensor:
        """Each sample's `crops` random crops, resized to the model's input and noised, in the generator
        convention: (B * crops, 3, input, input), sample by sample."""
        x = self.image(phase)
        if x.requires_grad:
            x.register_hook(self._accumulate)
        size, out = x.shape[-1], []
        for b, rng in enumerate(self.rngs):
            boxes = torch.rand(self.crops, generator=rng) * (self.box[1] - self.box[0]) + self.box[0]
            centres = torch.randn(self.crops, 2, generator=rng) * self.centre_std + 0.5
            sigmas = torch.rand(self.crops, generator=rng) * (self.noise[1] - self.noise[0]) + self.noise[0]
            shape = (self.crops, 3, self.input_size, self.input_size)
            gauss, uniform = torch.randn(shape, generator=rng), torch.rand(shape, generator=rng) * 2 - 1
            for k in range(self.crops):
                s = max(8, int(round(float(boxes[k]) * size)))
                top, left = (int(round(float(c) * size - s / 2)) for c in centres[k])
                top, left = min(max(top, 0), size - s), min(max(left, 0), size - s)
                crop = x[b:b + 1, :, top:top + s, left:left + s]
                if s != self.input_size:
                    crop = F.interpolate(crop, size=(self.input_size,) * 2, mode="bilinear", align_corners=False)
                noise = (gauss[k] + uniform[k]).to(x.device) * float(sigmas[k])
                out.append(crop + noise)
        return rgb_to_gen(torch.cat(out))

    def update(self, phase, g, active, lr) -> tuple[torch.Tensor, torch.Tensor]:
        return self.nadam.step(phase, g, lr), active  # the phase never stops

    def view(self, target: Target, x: torch.Tensor, new_phase: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return rgb_to_gen(self.image(new_phase))  # the picture after the step: the last one is the result

    def select(self, b: int) -> "PhaseParam":
        """Sample b's own parameterisation (its crops, noise, NAdam state and alpha map), kept for `alpha_maps`."""
        one = PhaseParam([self.seeds[b]], self.magnitude, self.colour, self.input_size, crops=self.crops,
                         box=self.box, centre_std=self.centre_std, noise=self.noise)
        one.rngs = [self.rngs[b]]
        self.children[b] = one
        return one

    def alpha_maps(self, b: int) -> torch.Tensor:
        """(B, H, W) in [0, 1]: each sample's accumulated gradient magnitude over its own maximum."""
        parts = [self.children[j].alpha for j in range(b)] if self.children else [self.alpha]
        if any(p is None for p in parts):
            size = self.magnitude.shape[-2]
            return torch.zeros(b, size, size)
        a = torch.cat(parts).cpu()
        return a / a.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)


@dataclass(frozen=True)
class CropMean:
    """The objective of `inner` averaged over each sample's `crops` consecutive crops."""

    inner: object
    crops: int

    def __call__(self, target: Target, x_gen: torch.Tensor) -> torch.Tensor:
        inner = self.inner
        if isinstance(inner, UnitObjective):  # one unit per sample: each of its crops asks for that unit
            inner = UnitObjective(inner.layer, inner.units.repeat_interleave(self.crops), inner.position)
        return inner(target, x_gen).view(-1, self.crops).mean(1)

    def select(self, b: int) -> "CropMean":
        return CropMean(self.inner.select(b), self.crops)


@dataclass
class MacoResult:
    batch: BatchResult
    alpha: torch.Tensor  # (B, H, W) in [0, 1]


def run(target: Target, layer: LayerInfo, units: Sequence[int], *, seeds: Sequence[int],
        n_iters: int = MACO_DEFAULTS["n_iters"], lr: float = MACO_DEFAULTS["lr"],
        crops: int = MACO_DEFAULTS["crops"], box: tuple[float, float] = MACO_DEFAULTS["box"],
        centre_std: float = MACO_DEFAULTS["centre_std"], noise: tuple[float, float] = MACO_DEFAULTS["noise"],
        size: Optional[int] = None, position: Optional[tuple[int, int]] = None,
        callback: Optional[StepCallback] = None, preview_every: int = 0, objective=None,
        accel=None) -> MacoResult:
    """One picture per (unit, seed) pair, `size` px square (default: the model's input size). `accel`
    (accel.Accel or None: the plain fp32 path) computes the target's passes faster, as for DGN-AM."""
    target = _accel.prepare_target(target, accel)
    dev = target.device
    size = size or target.spec.input_size
    magnitude, colour = load_spectrum(size, dev)
    phase0 = initial_phases(seeds, magnitude.shape)
    param = PhaseParam(seeds, magnitude, colour, target.spec.input_size, crops=crops, box=box,
                       centre_std=centre_std, noise=noise)
    obj = objective or UnitObjective(layer, torch.as_tensor(list(units), device=dev), position)
    res = optimise(param, CropMean(obj, crops), target, phase0, n_iters=n_iters, lr_start=lr, lr_end=lr,
                   callback=callback, preview_every=preview_every, accel=accel)
    return MacoResult(res, param.alpha_maps(len(seeds)))
