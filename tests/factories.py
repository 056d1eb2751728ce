"""Small real weight files for tests: generators and models with random but well-scaled weights."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from dgnam_engine import generators


@torch.no_grad()
def responsive(gen: torch.nn.Module, code_shape, out_std: float = 60.0, seed: int = 0) -> torch.nn.Module:
    """Rescale each layer so its output has unit std on random codes (PyTorch's default init makes a deep
    generator's output almost independent of its code), and the image a visible std of `out_std`."""
    torch.manual_seed(seed)
    for m in gen.modules():
        if hasattr(m, "bias") and isinstance(m.bias, torch.Tensor):
            m.bias.zero_()
    x = torch.randn(8, *code_shape).abs() * 3
    layers = [m for m in gen if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    for m in gen:
        y = m(x)
        if m in layers:
            target = out_std if m is layers[-1] else 1.0
            m.weight.mul_(target / y.std().clamp_min(1e-12))
            y = m(x)
        x = y
    return gen


def save_fc6_hf_format(path: Path, seed: int = 0) -> Path:
    """A random fc6 generator saved like the Hugging Face upconvGAN_fc6.pt: a plain state dict, Caffe layer names."""
    torch.manual_seed(seed)
    gen = responsive(generators.upconv_fc(4096), (4096,), seed=seed)
    torch.save(gen.state_dict(), path)
    return path


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
