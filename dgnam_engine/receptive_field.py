"""The receptive field of one position of a convolutional layer: the input pixels it can see.

Found from the network itself rather than from a table of kernels and strides, so it holds for any model
(branching GoogLeNet and timm blocks included): the set of input pixels with a non-zero gradient of the layer's
output at (row, col), over a few random inputs (one input could leave a pixel at zero through a dead ReLU). For a
plain chain of convolutions and poolings this is exactly the classic kernel/stride arithmetic (CaffeNet conv5 at
(6, 6): 163 px from 32, as the original `4_activate_hidden.sh` crops).
"""
from __future__ import annotations

import threading

import torch

from .targets import LayerInfo, Target

_cache: dict = {}
_lock = threading.Lock()


def receptive_field(target: Target, layer: LayerInfo, position: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), bottom/right exclusive, in pixels of the model's input image."""
    if layer.kind != "conv":
        raise ValueError(f"layer {layer.name} is not convolutional")
    key = (target.name, target.spec.input_size, layer.module, tuple(position))
    with _lock:
        if key in _cache:
            return _cache[key]
    size = target.spec.input_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, size, size, generator=gen).to(target.device).requires_grad_(True)
    with torch.enable_grad():
        out = target.forward_to(x, layer)
        r, c = position
        (g,) = torch.autograd.grad(out[:, :, r, c].float().sum(), x)
    seen = g.abs().sum((0, 1)) > 0
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1) if len(rows) else (
        0, 0, size, size)
    with _lock:
        _cache[key] = box
    return box
