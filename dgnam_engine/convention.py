"""The one image convention of the project, and its conversions.

Generators (the original DeePSiM priors and the demo priors alike) speak Caffe's convention: BGR channels, the
ImageNet pixel mean subtracted, 0-255 scale. Pictures shown to people and read from files are RGB, either uint8
(H, W, 3) arrays or [0, 1] float tensors (B, 3, H, W). Every conversion between the two goes through here.
"""
from __future__ import annotations

import numpy as np
import torch

RGB_MEAN = (123.0, 117.0, 104.0)  # the pixel mean the original generators subtract, in RGB order
BGR_MEAN = RGB_MEAN[::-1]


def _mean(like: torch.Tensor, order=RGB_MEAN) -> torch.Tensor:
    return like.new_tensor(order).view(1, 3, 1, 1)


def gen_to_rgb(x_gen: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Generator convention -> RGB [0, 1] (clamped to what a picture can show unless `clamp` is False)."""
    rgb = (x_gen.flip(1) + _mean(x_gen)) / 255.0
    return rgb.clamp(0, 1) if clamp else rgb


def rgb_to_gen(rgb: torch.Tensor) -> torch.Tensor:
    """RGB [0, 1] (B, 3, H, W) -> generator convention, so real photos go where generated pictures go."""
    return (rgb * 255.0 - _mean(rgb)).flip(1)


def uint8_to_gen(rgb_u8: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) uint8 RGB -> generator convention (B, 3, H, W), exactly (no trip through [0, 1])."""
    x = rgb_u8.permute(0, 3, 1, 2).float()
    return (x - _mean(x)).flip(1)


def gen_pixel_bounds(device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator-convention values of black and white, per channel: the box of valid pixels."""
    mean_bgr = torch.tensor(BGR_MEAN, device=device).view(1, 3, 1, 1)
    return -mean_bgr, 255.0 - mean_bgr


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, H, W) RGB in [0, 1] (a CPU tensor) -> B arrays of (H, W, 3) uint8."""
    return [(im.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8) for im in images]


def from_uint8(images) -> torch.Tensor:
    """(H, W, 3) uint8 arrays (one, a list, or a (B, H, W, 3) array or tensor) -> (B, 3, H, W) RGB [0, 1]."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    elif isinstance(images, (list, tuple)):
        images = np.stack(images)
    t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    return t.permute(0, 3, 1, 2).float() / 255.0
