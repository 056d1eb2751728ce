"""Faster ways to run the same DGN-AM loop: reduced precision, channels-last, fast linear backward, torch.compile,
CUDA graphs and batch sizing from free memory.

The plain fp32 eager loop (dgnam.run with accel=None) stays the reference. `Accel` only changes how the forward
and backward passes are computed; the update rule, per-sample normalisation and stopping rule are the same code.
Working copies of the generator and the target are made once per (model, settings) and cached, so the caller's
fp32 modules are never touched.
"""
from __future__ import annotations

import copy
import gc
import logging
import os
import threading
import warnings
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import batchnorm_fold, truncate
from .convention import RGB_MEAN
from .errors import UserError
from .targets import Target

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PREVIEW_ITERS = 40  # see docs/performance.md: enough for the image to settle on CPU in a few seconds


@dataclass(frozen=True)
class Accel:
    """How to compute the passes. Build one with `for_device` unless you measure something else."""

    dtype: str = "float32"  # weights and activations inside the generator and the target
    channels_last: bool = False  # NHWC convolutions (oneDNN on CPU, tensor cores on GPU)
    fast_linear: bool = False  # linear layers keep a transposed weight so the backward is a fast GEMV
    fold_bn: bool = False  # the target's eval batch norms folded into the convolutions before them (batchnorm_fold)
    packed: bool = False  # CPU: linear (fast_linear) and convolution weights in oneDNN's packed layout, packed once
    int8_linear: bool = False  # linear layers with int8 weights (per-row scale): half the bytes of bf16 (CPU);
    # layers whose sizes the int8 kernel cannot take stay fast_linear
    compile: bool = False  # torch.compile the generator and the target (slow first call)
    cuda_graph: bool = False  # capture one whole step and replay it (GPU; live runs read progress every check_every)
    check_every: int = 1  # k: steps between host reads (progress, cancel, "all samples stopped"; a GPU sync each)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]



@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Native bf16 dot products (AVX512-BF16 or AMX): only then is bf16 faster than fp32 on a CPU."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def for_device(device: torch.device | str) -> Accel:
    """The settings measured fastest (docs/performance.md) that keep activations within bf16 rounding of fp32."""
    dev = torch.device(device)
    if dev.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return Accel(dtype="bfloat16" if bf16 else "float32", channels_last=True, cuda_graph=True,
                     check_every=25)
    if cpu_has_fast_bf16():
        # int8_linear stays opt-in: its private kernel (torch._weight_int8pack_mm) crashed the process once in
        # backward during a 4-unit run here, and a live demo must not die.
        return Accel(dtype="bfloat16", channels_last=True, fast_linear=True, packed=True, fold_bn=True)
    return Accel(channels_last=True, fold_bn=True)


def describe(accel: Optional[Accel], device: torch.device | str) -> str:
    """The device and precision a run really uses, as results are keyed and labelled: 'cpu bfloat16', 'cuda
    float32 plain' (the reference path)."""
    dev = torch.device(device).type
    return f"{dev} float32 plain" if accel is None else f"{dev} {accel.dtype}"


def resolve(accel: "Accel | str | None", device: torch.device | str) -> Optional[Accel]:
    """None / 'plain' -> the reference path; 'auto' -> `for_device`; an Accel is used as it is."""
    if accel is None or accel == "plain":
        return None
    if accel == "auto":
        return for_device(device)
    if isinstance(accel, Accel):
        return accel
    raise ValueError(f"unknown accel setting {accel!r}")


# ----- module conversion -----------------------------------------------------------------------------------------

class _LinearT(torch.autograd.Function):
    """y = x W^T + b whose backward reads a stored W^T, so both directions are the GEMV layout CPUs do fastest
    (the bf16 kernel for x @ W is several times slower than for x @ W^T). Frozen weights: input gradient only."""

    @staticmethod
    def forward(ctx, x, weight, weight_t, bias):
        ctx.save_for_backward(weight_t)
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        (weight_t,) = ctx.saved_tensors
        return F.linear(grad, weight_t), None, None, None


class FastLinear(nn.Module):
    def __init__(self, lin: nn.Linear):
        super().__init__()
        self.weight = nn.Parameter(lin.weight.detach().clone(), requires_grad=False)
        self.bias = None if lin.bias is None else nn.Parameter(lin.bias.detach().clone(), requires_grad=False)
        self.register_buffer("weight_t", lin.weight.detach().t().contiguous())

    def forward(self, x):
        return _LinearT.apply(x, self.weight, self.weight_t, self.bias)


class _Packs:
    """Packed weights (opaque oneDNN tensors, which cannot be copied) and their lock: shared by a module's copies
    (truncate.private_copy), like the weights they come from."""

    def __init__(self, **packs):
        self.__dict__.update(packs)
        self.lock = threading.Lock()

    def __deepcopy__(self, memo):
        return self


class _PackedLinearFn(torch.autograd.Function):
    """y = x W^T + b with W and W^T held in oneDNN's blocked layout (packed once), so the batch-1 products of
    both directions stream the weights at memory speed: 5.1 ms against 7.3 ms (bf16 `F.linear`) for the six
    linear layers of an fc6 prior and AlexNet, forward only, 2 threads (docs/performance.md). The same products
    as `F.linear` in the same precision: only the weights' layout in memory changes."""

    @staticmethod
    def forward(ctx, x, packed, packed_t, bias):
        ctx.packed_t = packed_t  # an opaque oneDNN tensor: kept on ctx, autograd cannot save it
        flat = x.reshape(-1, x.shape[-1]).contiguous()
        y = torch.ops.mkldnn._linear_pointwise(flat, packed, bias, "none", [], "")
        return y.reshape(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):
        flat = grad.reshape(-1, grad.shape[-1]).contiguous()
        dx = torch.ops.mkldnn._linear_pointwise(flat, ctx.packed_t, None, "none", [], "")
        return dx.reshape(*grad.shape[:-1], dx.shape[-1]), None, None, None


class PackedLinear(nn.Module):
    """A frozen linear layer on packed weights (CPU, made by `pack_linears` after the dtype cast)."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor]):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)  # kept for state_dict / probes
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.packs = _Packs(w=torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), 1),
                            w_t=torch.ops.mkldnn._reorder_linear_weight(self.weight.detach().t().contiguous(), 1))

    def forward(self, x):
        return _PackedLinearFn.apply(x.to(self.weight.dtype), self.packs.w, self.packs.w_t, self.bias)


def _packs_correctly(lin: nn.Module) -> bool:
    """Pack a small layer of this dtype and compare both directions with F.linear: oneDNN may lack the kernel."""
    w = lin.weight.detach()
    try:
        small = PackedLinear(w[:8, :16], None if lin.bias is None else lin.bias.detach()[:8])
        x = torch.randn(1, 16, dtype=w.dtype, requires_grad=True)
        with torch.enable_grad():
            y = small(x)
            (g,) = torch.autograd.grad(y.float().sum(), x)
        ref = F.linear(x.detach().float(), small.weight.float(), None if small.bias is None else small.bias.float())
        ok_fwd = torch.allclose(y.float(), ref, rtol=0.02, atol=0.02)
        ok_bwd = torch.allclose(g.float(), small.weight.float().sum(0, keepdim=True), rtol=0.02, atol=0.02)
        return bool(ok_fwd and ok_bwd)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def pack_linears(module: nn.Module) -> int:
    """Replace every FastLinear of a CPU module (already in its final dtype) by a PackedLinear, where oneDNN packs
    and computes that dtype correctly; returns how many were packed (0: the FastLinear layers stay)."""
    fast = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
            if isinstance(child, FastLinear)]
    if not fast or fast[0][2].weight.device.type != "cpu" or not _packs_correctly(fast[0][2]):
        return 0
    for parent, name, child in fast:
        setattr(parent, name, PackedLinear(child.weight, child.bias))
    return len(fast)


class _PackedConvFn(torch.autograd.Function):
    """A convolution or transposed convolution whose forward and input gradient both run on weights packed once
    per input shape (PackedConv): the same oneDNN arithmetic as F.conv2d / its autograd backward (equal to the
    last bit on the layers measured), 25% less time on AlexNet's and the fc6 prior's layers (docs/performance.md)."""

    @staticmethod
    def forward(ctx, x, layer):
        ctx.layer, ctx.in_shape = layer, tuple(x.shape)
        return layer.packed_forward(x)

    @staticmethod
    def backward(ctx, grad):
        return ctx.layer.packed_input_grad(grad, ctx.in_shape), None


class PackedConv(nn.Module):
    """A frozen nn.Conv2d or nn.ConvTranspose2d (groups 1, zero padding) on packed weights; an input shape whose
    packed result differs from F.conv2d's (checked once per shape) runs on the plain kernels instead."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        self.weight, self.bias = conv.weight, conv.bias
        self.stride, self.padding, self.dilation = list(conv.stride), list(conv.padding), list(conv.dilation)
        self.output_padding = list(getattr(conv, "output_padding", (0, 0)))
        # input shape -> (forward pack, input-gradient pack, output padding of the gradient), or None: plain kernels
        self._packs = _Packs(by_shape={})

    def _plain(self, x):
        if self.transposed:
            return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding, 1,
                                      self.dilation)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def _conv_pack(self, shape):
        return torch._C._nn.mkldnn_reorder_conv2d_weight(self.weight.detach().contiguous().to_mkldnn(), self.padding,
                                                         self.stride, self.dilation, 1, list(shape))

    def _deconv_pack(self, shape, output_padding):
        return torch.ops.mkldnn._reorder_convolution_transpose_weight(
            self.weight.detach().contiguous(), self.padding, output_padding, self.stride, self.dilation, 1,
            list(shape))

    def _conv(self, x, pack, bias):
        return torch.ops.mkldnn._convolution_pointwise(x, pack, bias, self.padding, self.stride, self.dilation, 1,
                                                       "none", [], "")

    def _deconv(self, x, pack, bias, output_padding):
        return torch.ops.mkldnn._convolution_transpose_pointwise(x, pack, bias, self.padding, output_padding,
                                                                 self.stride, self.dilation, 1, "none", [], "")

    def _packs_for(self, x):
        key, known = tuple(x.shape), self._packs.by_shape
        if key in known:
            return known[key]
        with self._packs.lock:
            if key not in known:
                known[key] = self._make_packs(x)
            return known[key]

    def _make_packs(self, x):
        """Both packs for this input shape, after checking the packed forward and input gradient against the plain
        kernels on this very input; None where oneDNN cannot pack or disagrees."""
        try:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                ref = self._plain(xg)
                g = torch.ones_like(ref)
                (ref_grad,) = torch.autograd.grad(ref, xg, g)
            if self.transposed:
                fwd = self._deconv_pack(x.shape, self.output_padding)
                bwd = self._conv_pack(ref.shape)
                got, got_grad = self._deconv(x, fwd, self.bias, self.output_padding), self._conv(g, bwd, None)
                extra = None
            else:
                extra = [a - ((b - 1) * s - 2 * p + d * (k - 1) + 1) for a, b, s, p, d, k in
                         zip(x.shape[2:], ref.shape[2:], self.stride, self.padding, self.dilation,
                             self.weight.shape[2:])]  # the output padding that gives back the input's size
                fwd, bwd = self._conv_pack(x.shape), self._deconv_pack(ref.shape, extra)
                got, got_grad = self._conv(x, fwd, self.bias), self._deconv(g, bwd, None, extra)
            same = (got.shape == ref.shape and got_grad.shape == ref_grad.shape
                    and torch.allclose(got.float(), ref.float(), rtol=1e-2, atol=1e-2)
                    and torch.allclose(got_grad.float(), ref_grad.float(), rtol=1e-2, atol=1e-2))
            if same:
                return fwd, bwd, extra
            why = "its result differs from the plain kernel's"
        except (RuntimeError, NotImplementedError) as exc:
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        log.warning("packed weights: a %s layer with input %s runs on the plain kernels (%s)",
                    "transposed convolution" if self.transposed else "convolution", tuple(x.shape), why)
        return None

    def packed_forward(self, x):
        packs = self._packs_for(x)
        if packs is None:
            return self._plain(x)
        fwd, _, _ = packs
        return self._deconv(x, fwd, self.bias, self.output_padding) if self.transposed else self._conv(x, fwd,
                                                                                                         self.bias)

    def packed_input_grad(self, grad, in_shape):
        grad = grad.to(self.weight.dtype).contiguous(memory_format=torch.channels_last)
        packs = self._packs.by_shape.get(in_shape)
        if packs is None:  # the plain kernels' gradient
            with torch.enable_grad():
                x = torch.zeros(in_shape, dtype=grad.dtype).contiguous(memory_format=torch.channels_last)
                x.requires_grad_(True)
                return torch.autograd.grad(self._plain(x), x, grad)[0]
        _, bwd, extra = packs
        return self._conv(grad, bwd, None) if self.transposed else self._deconv(grad, bwd, None, extra)

    def forward(self, x):
        x = x.to(self.weight.dtype).contiguous(memory_format=torch.channels_last)
        return _PackedConvFn.apply(x, self)


def pack_convolutions(module: nn.Module, skip: set) -> int:
    """Replace each plain nn.Conv2d / nn.ConvTranspose2d of a CPU bf16 module (groups 1, zero padding, not in
    `skip`, not a subclass with its own forward) by a PackedConv; returns how many."""
    names = {id(m): n for n, m in module.named_modules()}
    found = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
             if type(child) in (nn.Conv2d, nn.ConvTranspose2d) and child.groups == 1
             and child.padding_mode == "zeros" and isinstance(child.padding, tuple)
             and child.weight.device.type == "cpu" and child.weight.dtype == torch.bfloat16
             and names.get(id(child)) not in skip]
    for parent, name, child in found:
        setattr(parent, name, PackedConv(child))
    return len(found)


class _Int8LinearFn(torch.autograd.Function):
    """y = x (q * s)^T + b with int8 q and per-output-row scales s; dx = (g * s) q, from a stored q^T so that
    both directions use the int8 weight-only GEMV kernel (memory bound at batch 1: a quarter of fp32's bytes)."""

    @staticmethod
    def forward(ctx, x, q, q_t, scale, ones, bias):
        ctx.save_for_backward(q_t, scale, ones)
        y = torch._weight_int8pack_mm(x.reshape(-1, x.shape[-1]).contiguous(), q, scale.to(x.dtype))
        y = y.reshape(*x.shape[:-1], q.shape[0])
        return y if bias is None else y + bias.to(y.dtype)

    @staticmethod
    def backward(ctx, grad):
        q_t, scale, ones = ctx.saved_tensors
        g = (grad * scale.to(grad.dtype)).reshape(-1, grad.shape[-1]).contiguous()
        dx = torch._weight_int8pack_mm(g, q_t, ones.to(grad.dtype))
        return dx.reshape(*grad.shape[:-1], q_t.shape[0]), None, None, None, None, None


class Int8Linear(nn.Module):
    """A frozen linear layer with symmetric per-row int8 weights (about 1% relative error per layer, measured in
    docs/performance.md)."""

    def __init__(self, lin: nn.Linear):
        super().__init__()
        w = lin.weight.detach().float()
        scale = w.abs().amax(1).clamp_min(1e-12) / 127.0
        q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("q", q)
        self.register_buffer("q_t", q.t().contiguous())
        self.register_buffer("scale", scale)
        self.register_buffer("ones", torch.ones(w.shape[1]))
        self.bias = None if lin.bias is None else nn.Parameter(lin.bias.detach().clone(), requires_grad=False)

    def forward(self, x):
        return _Int8LinearFn.apply(x, self.q, self.q_t, self.scale, self.ones, self.bias)


INT8_BLOCK = 64  # the int8 kernel returns garbage unless the reduced dimension is a multiple of its block


def _int8_ok(lin: nn.Linear) -> bool:
    return lin.in_features % INT8_BLOCK == 0 and lin.out_features % INT8_BLOCK == 0  # K of forward and backward


def _swap_linears(module: nn.Module, int8: bool) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child) if int8 and _int8_ok(child) else FastLinear(child))
        else:
            _swap_linears(child, int8)


def _cast_input(dtype: torch.dtype, channels_last: bool):
    def hook(_m, args):
        x = args[0].to(dtype)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return (x,) + tuple(args[1:])
    return hook


def _cast_output(dtype: torch.dtype):
    def hook(_m, _args, out):
        return out.to(dtype) if isinstance(out, torch.Tensor) and out.is_floating_point() else out
    return hook


# ----- per-layer precision ---------------------------------------------------------------------------------------

_INPUT_SIZE_ATTRS = ("in_features", "in_channels", "num_features", "num_channels")
_precision_ok: dict = {}  # (module type, device type, dtype, channels_last) -> bool


def _probe_inputs(leaf: nn.Module) -> list[tuple[int, ...]]:
    """Small input shapes a layer of this kind may take; the fp32 control run picks the first that fits."""
    matrix = getattr(leaf, "weight", getattr(leaf, "q", None))  # FastLinear / Int8Linear keep no in_features
    if isinstance(matrix, torch.Tensor) and matrix.dim() == 2:
        return [(2, matrix.shape[1])]
    c = next((getattr(leaf, a) for a in _INPUT_SIZE_ATTRS if isinstance(getattr(leaf, a, None), int)), 8)
    return [(2, c, 16, 16), (2, c, 32, 32), (2, c, 16), (2, c)]


def _runs(leaf: nn.Module, x: torch.Tensor) -> bool:
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            y = leaf(x)
            if not isinstance(y, torch.Tensor) or not y.is_floating_point():
                return False
            (g,) = torch.autograd.grad(y.float().sum(), x)
        return bool(g.shape == x.shape)
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return False


def layer_runs_in(leaf: nn.Module, dtype: torch.dtype, device: torch.device, channels_last: bool) -> bool:
    """Whether layers of this kind run forward and backward in `dtype` on `device` (e.g. LocalResponseNorm has
    no bf16 CPU kernel). Probed once per kind, device, dtype and layout on a tiny input, then cached. A layer that
    already fails in fp32 on every probe shape (a reshape needing an exact size) has nothing dtype-specific to
    test and counts as running."""
    key = (type(leaf), device.type, dtype, channels_last)
    if key in _precision_ok:
        return _precision_ok[key]
    ok = True
    for shape in _probe_inputs(leaf):
        x = torch.randn(shape, device=device)
        if not _runs(leaf, x):  # the fp32 control: this shape does not fit the layer
            continue
        low = copy.deepcopy(leaf).to(dtype)
        xl = x.to(dtype)
        if channels_last and xl.dim() == 4:
            low.to(memory_format=torch.channels_last)
            xl = xl.contiguous(memory_format=torch.channels_last)
        ok = _runs(low, xl)
        break
    _precision_ok[key] = ok
    return ok


def _device_of(module: nn.Module) -> torch.device:
    t = next(iter(module.parameters()), None)
    if t is None:
        t = next(iter(module.buffers()), None)
    return t.device if t is not None else torch.device("cpu")


def slow_in_low_precision(leaf: nn.Module, device: torch.device) -> bool:
    """A layer whose low-precision CPU kernel is far slower than fp32: a strided depthwise convolution, whose
    bf16 input gradient took 1.3-2.0 ms against 0.07-0.11 ms in fp32 (EfficientNet-Lite0's stride-2 blocks,
    2 threads, bench in docs/performance.md). A fixed rule, not a timing, so the same layers run in the same
    precision on every run."""
    return (device.type == "cpu" and isinstance(leaf, nn.Conv2d) and leaf.groups > 1
            and leaf.groups == leaf.in_channels and max(leaf.stride) > 1)


def _leaves_without_kernels(module: nn.Module, dtype: torch.dtype, channels_last: bool) -> list[str]:
    """The leaves that stay fp32: no kernel in `dtype` on this device, or a far slower one."""
    if dtype == torch.float32:
        return []
    dev = _device_of(module)
    return [name for name, leaf in module.named_modules()
            if name and not any(True for _ in leaf.children())
            and (slow_in_low_precision(leaf, dev) or not layer_runs_in(leaf, dtype, dev, channels_last))]


def convert(module: nn.Module, accel: Accel) -> nn.Module:
    """A frozen copy of `module` computing in accel's dtype and layout; it takes inputs of any dtype.

    Layers that cannot run in that dtype on this device stay fp32 (inputs cast up, outputs cast back down), so the
    fast path never picks a precision a layer has no kernel for; `low_precision_skipped` lists them."""
    m = copy.deepcopy(module)
    if accel.int8_linear or accel.fast_linear:
        _swap_linears(m, accel.int8_linear)
    keep_fp32 = _leaves_without_kernels(m, accel.torch_dtype, accel.channels_last)
    mods = dict(m.named_modules())
    fp32_state = {name: {k: v.clone() for k, v in mods[name].state_dict().items()} for name in keep_fp32}
    m.to(accel.torch_dtype)
    if accel.channels_last:
        m.to(memory_format=torch.channels_last)
    for name in keep_fp32:
        leaf = mods[name]
        leaf.float()
        leaf.load_state_dict(fp32_state[name])  # the fp32 values, not their bf16 rounding
        leaf.register_forward_pre_hook(_cast_input(torch.float32, False))
        leaf.register_forward_hook(_cast_output(accel.torch_dtype))
    if accel.packed:
        pack_linears(m)
        pack_convolutions(m, skip=set(keep_fp32))
    m.low_precision_skipped = tuple(keep_fp32)
    m.eval().requires_grad_(False)
    m.register_forward_pre_hook(_cast_input(accel.torch_dtype, accel.channels_last))
    return m


def convert_target(target: Target, accel: Accel) -> nn.Module:
    """`convert` for a target's model, checked on one input of its size, forward and backward: an op outside the
    probed layers (a functional call inside a block) that has no kernel in accel's dtype sends the whole model back
    to fp32, with a warning, instead of failing a run that the plain path finishes."""
    size = target.spec.input_size
    source = target.model
    if accel.fold_bn:  # registered layers keep their outputs: a convolution that is a layer keeps its norm
        example = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(target.device)
        source = batchnorm_fold.folded_copy(target.model, example, {i.module for i in target.layers.values()})
    m = convert(source, accel)
    if accel.torch_dtype == torch.float32:
        return m
    x = torch.zeros(1, 3, size, size, device=target.device, requires_grad=True)
    try:
        with torch.enable_grad():
            (g,) = torch.autograd.grad(m(x).float().sum(), x)
        if torch.isfinite(g).all():
            return m
        why = "its gradient is not finite"
    except (RuntimeError, NotImplementedError) as exc:
        why = str(exc).strip().splitlines()[0][:200]
    warnings.warn(f"fast path: {target.name} cannot run in {accel.dtype} on {target.device.type} ({why}); "
                  "it runs in float32")
    return convert(source, replace(accel, dtype="float32", int8_linear=False))


class FastTarget(Target):
    """The same target on a converted model. Preprocessing uses constants made once (a CUDA graph cannot
    capture the host-to-device copies that building them on every call needs); tests/test_accel.py checks that it
    matches Target.preprocess. Layers are read through truncations of the converted model (truncate.py), compiled
    when `compile` is set, so torch.compile sees one hook-free graph per layer."""

    def __init__(self, base: Target, model: nn.Module, compile: bool = False):
        super().__init__(base.spec, model, base.device, base.weights_path)
        self._layers = base.layers
        self._compile = compile
        dev = base.device
        self._mean_rgb = torch.tensor(RGB_MEAN, device=dev).view(1, 3, 1, 1)
        self._m = torch.tensor(base.spec.mean, device=dev).view(1, 3, 1, 1)
        self._s = torch.tensor(base.spec.std, device=dev).view(1, 3, 1, 1)

    def preprocess(self, x_gen: torch.Tensor) -> torch.Tensor:
        x = self.crop(x_gen)
        if self.spec.colour == "caffe":
            return x
        rgb = (x.flip(1) + self._mean_rgb) / 255.0
        return (rgb - self._m) / self._s

    def layer_model(self, layer) -> nn.Module:
        return truncate.layer_model(self.model, layer.module, self._example, compile=self._compile)


_converted: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _cached(module: nn.Module, accel: Accel, make):
    """One converted copy per (module, settings that change the copy), shared by every run and thread."""
    key = replace(accel, check_every=1, cuda_graph=False)
    with _lock:
        per = _converted.setdefault(module, {})
        if key not in per:
            per[key] = make()
        return per[key]


def prepare(generator: nn.Module, target: Target, accel: Accel) -> tuple[nn.Module, Target]:
    """Converted (and cached) generator and target for `accel`."""
    gen = _cached(generator, accel, lambda: _maybe_compile(convert(generator, accel), accel))
    return gen, prepare_target(target, accel)


def prepare_target(target: Target, accel: Optional[Accel]) -> Target:
    """The converted (and cached) target for `accel`; the target itself for the plain path (None). The methods
    without a generator (pixel, MACO) need only this."""
    if accel is None:
        return target
    # the target's model is compiled per layer, as its truncations (FastTarget.layer_model)
    model = _cached(target.model, accel, lambda: convert_target(target, accel))
    return FastTarget(target, model, compile=accel.compile)


@contextmanager
def fast_kernels(device: torch.device, accel: Optional[Accel]):
    """cuDNN autotuning (fixed shapes: time the kernels once, keep the fastest) for a fast-path run only: set for
    the run and restored after it, so the fp32 reference keeps its deterministic kernel choice. The flag is
    process-wide: a reference run in another thread during a fast run autotunes too."""
    if accel is None or torch.device(device).type != "cuda":
        yield
        return
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _maybe_compile(module: nn.Module, accel: Accel) -> nn.Module:
    if not accel.compile:
        return module
    module.compile(dynamic=False)  # in place: the cached copy stays the module callers hold
    return module


# ----- CPU threads -----------------------------------------------------------------------------------------------

class cpu_threads:
    """Run a block with `n` intra-op threads, then restore the previous count."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.prev = torch.get_num_threads()
        if self.n != self.prev:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if torch.get_num_threads() != self.prev:
            torch.set_num_threads(self.prev)


# ----- CUDA graphs -----------------------------------------------------------------------------------------------

ALLOW_EAGER_ENV = "DGNAM_ALLOW_EAGER_FALLBACK"


class GraphCaptureError(RuntimeError):
    """A CUDA graph could not be captured and eager fallback was not allowed."""


def on_capture_failure(exc: BaseException) -> None:
    """A failed capture is an error: silently running eagerly would lose the speed the GPU path exists for, and
    hide the cause. With DGNAM_ALLOW_EAGER_FALLBACK=1 the reason goes to the log and the run goes on eagerly."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if os.environ.get(ALLOW_EAGER_ENV) == "1":
        log.warning("CUDA graph capture failed, running eagerly (%s=1): %s", ALLOW_EAGER_ENV, reason)
        return
    raise GraphCaptureError(f"CUDA graph capture failed: {reason} (set {ALLOW_EAGER_ENV}=1 to run eagerly "
                            "instead)") from exc


def graph_step(step, h: torch.Tensor, active: torch.Tensor, lrs: list[float]):
    """Capture `step` (forward, backward and update of the whole batch) once as a CUDA graph; the returned step
    copies its inputs into the graph's static tensors and replays it, so a step costs one launch and no host
    sync. The learning rates go to the device once. Returns (step, learning rates, captured); a failed capture
    raises GraphCaptureError unless eager fallback is allowed (on_capture_failure). Out-of-memory errors pass
    through, so that the caller can try a smaller batch."""
    dev = h.device
    lr_dev = torch.tensor(lrs, dtype=torch.float32, device=dev)
    s_h, s_active, s_lr = h.clone(), active.clone(), lr_dev[0].clone()
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    try:
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up: cuDNN autotuning and lazy inits must not happen during capture
                step(s_h, s_active, s_lr)
        torch.cuda.current_stream(dev).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = step(s_h, s_active, s_lr)
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as exc:
        torch.cuda.synchronize(dev)
        on_capture_failure(exc)
        return step, lrs, False

    def replay(h_in, active_in, lr_in):
        s_h.copy_(h_in)
        s_active.copy_(active_in)
        s_lr.copy_(lr_in)
        graph.replay()
        return out

    return replay, lr_dev, True


# ----- batch sizing ----------------------------------------------------------------------------------------------

CPU_BATCH = 16  # measured: larger batches gain nothing more on a few cores (docs/performance.md)


PROBE_STEPS = 3  # steps of a probe run: more than 1, so that it captures a graph like the real run


def free_memory(device: torch.device | str) -> None:
    """Give cached blocks back (after an out-of-memory error, before measuring free memory)."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


def auto_batch_size(n_units: int, device: torch.device | str, probe=None, *, fraction: float = 0.8,
                    cap: int = 1024) -> int:
    """Units per batch. On a GPU, `probe(k)` must run what the real run runs at batch k (the same settings, the
    CUDA graph on, PROBE_STEPS steps): its peak allocation, the graph's private pool and cuDNN's workspaces
    included, is measured at two sizes, and the batch is what `fraction` of the free memory holds (fit_batch).
    On a CPU: CPU_BATCH (larger batches gain nothing on a few cores, docs/performance.md)."""
    dev = torch.device(device)
    if dev.type != "cuda" or probe is None:
        return max(1, min(n_units, CPU_BATCH if dev.type != "cuda" else cap))

    def measure(k: int) -> int:
        torch.cuda.synchronize(dev)
        base = torch.cuda.memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        probe(k)
        torch.cuda.synchronize(dev)
        return torch.cuda.max_memory_allocated(dev) - base

    def free_bytes() -> int:
        free_memory(dev)
        return torch.cuda.mem_get_info(dev)[0]

    return fit_batch(n_units, measure, free_bytes, probe, lambda: free_memory(dev), fraction=fraction, cap=cap)


def fit_batch(n_units: int, measure, free_bytes, confirm, release, *, fraction: float = 0.8, cap: int = 1024,
              sizes: tuple[int, int] = (4, 16)) -> int:
    """The batch size from two measured runs (`measure(k)` -> peak bytes of a run at batch k): a fixed part and a
    part per sample, fitted into `fraction` of `free_bytes()`. The chosen size is run once (`confirm(k)`) and
    halved while that runs out of memory, as is a measuring run that does. `release()` frees memory after an
    out-of-memory error. Separate from auto_batch_size so that the rule is tested without a GPU."""
    limit = max(1, min(n_units, cap))

    def attempt(fn, k: int) -> Optional[int]:
        try:
            return fn(k) or 0
        except torch.OutOfMemoryError as exc:
            reason = (str(exc).strip().splitlines() or ["out of memory"])[0]
        log.warning("out of memory at batch %d while sizing batches: %s", k, reason)
        release()
        return None

    if attempt(measure, 1) is None:  # warm-up: converted copies, kernels, allocator; not per-sample costs
        raise torch.OutOfMemoryError("not even one unit fits in GPU memory")
    free = free_bytes()
    small, large = (min(s, limit) for s in sizes)
    m_small = attempt(measure, small)
    m_large = attempt(measure, large) if m_small is not None and large > small else None
    if m_small is None:
        size = max(1, small // 2)
    elif m_large is None:
        size = small if large > small else limit
    else:
        per = max(1.0, (m_large - m_small) / (large - small))
        fixed = max(0.0, m_small - small * per)
        size = int((free * fraction - fixed) // per)
    size = max(1, min(limit, size))
    while attempt(confirm, size) is None:
        if size == 1:
            raise torch.OutOfMemoryError("not even one unit fits in GPU memory")
        size //= 2
    return size


THREADS_ENV = "DGNAM_CPU_THREADS"
MAX_PASS_THREADS = 8  # one batch-1 pass gains little from more cores; beyond this, passes run side by side


def usable_cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


MAX_ENV_THREADS = 4096  # above any machine's cores; torch's thread count is a C int a 20-digit value overflows


def cpu_pass_threads() -> int:
    """The intra-op thread count of every CPU pass, fixed per machine: DGNAM_CPU_THREADS if set, else all usable
    cores up to MAX_PASS_THREADS. The kernels' sums split by thread count, and 200 normalised steps turn a
    last-bit difference into another picture (76/255 per pixel between 1 and 2 threads), so the count never
    follows the load, the process's torch setting or a timing (an earlier timed choice changed pictures by
    50/255 between two identical runs)."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if text:
        from .numbers import is_whole

        if not is_whole(text) or not 1 <= int(text) <= MAX_ENV_THREADS:  # ASCII digits only: "²", "٣" refused
            raise UserError(f"{THREADS_ENV}={text!r}: give a whole number of threads from 1 to {MAX_ENV_THREADS} "
                            f"(digits 0-9), or unset it")
        return int(text)
    return max(1, min(usable_cores(), MAX_PASS_THREADS))


def cpu_lanes(threads: int) -> int:
    """How many passes of `threads` threads run side by side without sharing a core."""
    return max(1, usable_cores() // threads)
