"""Fold a target's inference-mode batch normalisations into the convolutions that feed them (fast path only).

In eval mode BN(conv(x)) = conv'(x) with per-channel scaled weights and a new bias, so a forward and backward pass
saves the normalisation's two memory-bound passes over every activation: 13% of an EfficientNet-Lite0 step on
a CPU (docs/performance.md). Pairs are found by running the model once and matching each normalisation's input
to the convolution output it is; the folded copy must give the same output (within fp32 rounding), else nothing
is folded. A registered layer's output never changes: a convolution that is itself a layer keeps its
normalisation.
"""
from __future__ import annotations

import copy
import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # relative to the output's scale: fp32 rounding of the folded weights, nothing more


class ActAfterNorm(nn.Module):
    """What remains of timm's BatchNormAct2d once its normalisation is folded: dropout (inactive) and activation."""

    def __init__(self, drop: nn.Module, act: nn.Module):
        super().__init__()
        self.drop, self.act = drop, act

    def forward(self, x):
        return self.act(self.drop(x))


def _replacement(bn: nn.Module):
    """The module a folded normalisation becomes, or None when its forward is not known to be BN then extras."""
    if type(bn) is nn.BatchNorm2d:
        return nn.Identity()
    if type(bn).__name__ == "BatchNormAct2d" and isinstance(getattr(bn, "act", None), nn.Module) \
            and isinstance(getattr(bn, "drop", None), nn.Module):
        return ActAfterNorm(bn.drop, bn.act)
    return None


def _pairs(model: nn.Module, example: torch.Tensor, protected: set[str]) -> list[tuple[str, str]]:
    """(convolution name, normalisation name) pairs where the normalisation's input is that convolution's output."""
    outputs: dict[int, tuple[str, torch.Tensor]] = {}
    pairs: list[tuple[str, str]] = []
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and name not in protected:
            handles.append(m.register_forward_hook(
                lambda _m, _i, out, name=name: outputs.__setitem__(id(out), (name, out))))
        elif isinstance(m, nn.BatchNorm2d) and _replacement(m) is not None and m.track_running_stats \
                and m.running_mean is not None:
            handles.append(m.register_forward_pre_hook(
                lambda _m, args, name=name: pairs.append((outputs[id(args[0])][0], name))
                if id(args[0]) in outputs and outputs[id(args[0])][1] is args[0] else None))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    convs = [c for c, _ in pairs]
    return [(c, b) for c, b in pairs if convs.count(c) == 1]  # a convolution feeding two normalisations stays


def _fold_one(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    w = conv.weight.detach() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    b = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight = nn.Parameter(w, requires_grad=False)
    conv.bias = nn.Parameter((b - bn.running_mean) * scale + shift, requires_grad=False)


def folded_copy(model: nn.Module, example: torch.Tensor, protected: set[str]) -> nn.Module:
    """A copy of eval-mode `model` with its conv -> BN pairs folded; `model` itself when there is nothing to fold
    or the folded copy's output on `example` differs."""
    if model.training:
        return model
    found = _pairs(model, example, protected)
    if not found:
        return model
    out = copy.deepcopy(model)
    mods = dict(out.named_modules())
    for conv_name, bn_name in found:
        _fold_one(mods[conv_name], mods[bn_name])
        parent, _, leaf = bn_name.rpartition(".")
        setattr(mods[parent] if parent else out, leaf, _replacement(mods[bn_name]))
    with torch.no_grad():
        ref, got = model(example), out(example)
    err = float((got - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
    if not err <= TOLERANCE:
        log.warning("batch norm folding changed the output (%.2g relative); the normalisations stay", err)
        return model
    return out
