"""A layer's output without touching the model: a truncated forward pass, built once per (model, layer).

Models are shared between threads (the dashboard's worker runs while its pages classify images), so nothing here
registers anything on them. A hook added for one run would be met by every other forward pass of the same model
while it is there, and a hook added and removed on every step is invisible to torch.compile's guards.

- Known architectures (nn.Sequential, torchvision AlexNet and GoogLeNet, timm ResNet and EfficientNet) run as the
  ordered list of their children ("plan"), cut after the child holding the layer; nn.Sequential children are
  sliced further. The plan is checked once per model against the model's own output before it is used.
- Anything else (a plan that does not reproduce the model, a layer inside a child that cannot be cut) gets a
  private copy of the model that shares its tensors, with one hook registered at build time on the copy's layer
  that ends the forward pass. The copy is used by nothing else and the hook is never added or removed later.

torch.fx tracing is not used: it patches torch.nn.Module.__call__ for the whole process while it traces, which
breaks every forward pass other threads run at that moment.
"""
from __future__ import annotations

import copy
import itertools
import threading
import weakref
from typing import Callable, Optional, Sequence

import torch
from torch import nn

FLATTEN, TRANSFORM_INPUT = "<flatten>", "<transform_input>"

# The eval-mode forward pass of each architecture as its children in order (dropout is a no-op in eval, and the
# aux classifiers of GoogLeNet and timm's gradient checkpointing only run in training).
_PLANS: dict[str, tuple[str, ...]] = {
    "AlexNet": ("features", "avgpool", FLATTEN, "classifier"),
    "GoogLeNet": (TRANSFORM_INPUT, "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b",
                  "maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
                  "inception5a", "inception5b", "avgpool", FLATTEN, "dropout", "fc"),
    "ResNet": ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4", "global_pool", "fc"),
    "EfficientNet": ("conv_stem", "bn1", "blocks", "conv_head", "bn2", "global_pool", "classifier"),
}
# Architectures that share a class name with one above: torchvision's ResNet (the Places365 ResNets).
_OTHER_PLANS: dict[str, tuple[str, ...]] = {
    "ResNet": ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", FLATTEN, "fc"),
}


class _Method(nn.Module):
    """A method of the model as a step (GoogLeNet's input transform), holding the model weakly."""

    def __init__(self, owner: nn.Module, name: str):
        super().__init__()
        self.__dict__["_owner"] = weakref.ref(owner)
        self.name = name

    def forward(self, x):
        return getattr(self._owner(), self.name)(x)


class Truncated(nn.Module):
    """The model's forward pass up to and including one layer, as a sequence of the model's own modules.
    The model's forward pre-hooks (accel's input cast on its private converted copies) run first, as they would
    on a whole-model call."""

    def __init__(self, root: nn.Module, steps: Sequence[nn.Module]):
        super().__init__()
        # held weakly and not registered: the cache below is keyed weakly by the root, and must not keep it alive
        self.__dict__["_root"] = weakref.ref(root)
        self.pre_hooks = list(root._forward_pre_hooks.values())
        self.steps = nn.ModuleList(steps)

    def forward(self, x):
        args = (x,)
        for hook in self.pre_hooks:
            out = hook(self._root(), args)
            if out is not None:
                args = out if isinstance(out, tuple) else (out,)
        x = args[0]
        for step in self.steps:
            x = step(x)
        return x


class _Stop(Exception):
    def __init__(self, out):
        super().__init__()
        self.out = out


def _stop_hook(_m, _i, out):
    raise _Stop(out)  # the output travels in the exception: nothing shared between threads is written


class HookedCopy(nn.Module):
    """Fallback: a private copy of the model (its tensors shared, not duplicated) whose layer ends the pass."""

    def __init__(self, model: nn.Module, module_name: str):
        super().__init__()
        self.copy = private_copy(model)
        dict(self.copy.named_modules())[module_name].register_forward_hook(_stop_hook)

    def forward(self, x):
        try:
            self.copy(x)
        except _Stop as stop:
            return stop.out
        raise RuntimeError("the forward pass never reached the layer")


def private_copy(model: nn.Module) -> nn.Module:
    """A structural copy of `model` sharing every parameter and buffer: hooks on it reach no one else."""
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def _plan(model: nn.Module) -> Optional[list[str]]:
    if isinstance(model, nn.Sequential):
        return [name for name, _ in model.named_children()]
    for plans in (_PLANS, _OTHER_PLANS):
        plan = plans.get(type(model).__name__)
        if plan is None or any(not s.startswith("<") and not isinstance(getattr(model, s, None), nn.Module)
                               for s in plan):
            continue
        if TRANSFORM_INPUT in plan and not callable(getattr(model, "_transform_input", None)):
            continue
        return list(plan)
    return None


def _step(model: nn.Module, name: str) -> nn.Module:
    if name == FLATTEN:
        return nn.Flatten(1)
    if name == TRANSFORM_INPUT:
        return _Method(model, "_transform_input")
    return getattr(model, name)


def _cut(model: nn.Module, plan: list[str], path: str) -> Optional[list[nn.Module]]:
    """The steps of `plan` up to the module at dotted `path` (relative to `model`), or None if it cannot be cut."""
    steps = []
    for name in plan:
        if name == path:
            return steps + [_step(model, name)]
        if path.startswith(name + "."):
            child = getattr(model, name)
            if not isinstance(child, nn.Sequential):
                return None
            inner = _cut(child, [n for n, _ in child.named_children()], path[len(name) + 1:])
            return None if inner is None else steps + inner
        steps.append(_step(model, name))
    return None


def _plan_reproduces_model(model: nn.Module, plan: list[str], example: torch.Tensor) -> bool:
    if model._forward_hooks or model._forward_pre_hooks_with_kwargs:
        return False
    try:
        with torch.no_grad():
            ref = model(example)
            got = Truncated(model, [_step(model, n) for n in plan])(example)
    except Exception:  # noqa: BLE001 - any failure means the plan is not this model's forward pass
        return False
    if not isinstance(ref, torch.Tensor) or ref.shape != got.shape:
        return False
    ref, got = ref.float(), got.float()
    if not bool(torch.isfinite(ref).all()):  # a network giving NaN: no tolerance to compare by; the run says why
        return False
    return bool(torch.allclose(got, ref, rtol=1e-3, atol=1e-3 * float(ref.abs().max().clamp_min(1e-6))))


_cache: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def layer_model(model: nn.Module, module_name: str, example: Callable[[], torch.Tensor],
                compile: bool = False) -> nn.Module:
    """A module computing `model`'s output at `module_name` and no further, cached per (model, layer, compile).
    `example()` gives an input for the one-off check of the plan; `compile` torch.compiles the truncation."""
    key = (module_name, compile)
    with _lock:
        per = _cache.setdefault(model, {})
        if key not in per:
            if "plan" not in per:
                plan = _plan(model)
                per["plan"] = plan if plan is not None and _plan_reproduces_model(model, plan, example()) else None
            steps = _cut(model, per["plan"], module_name) if per["plan"] is not None else None
            mod = Truncated(model, steps) if steps is not None else HookedCopy(model, module_name)
            if compile:
                mod.compile(dynamic=False)
            per[key] = mod
        return per[key]

