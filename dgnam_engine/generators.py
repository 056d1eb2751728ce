"""Generator ("prior") architectures.

The original DeePSiM generators (Dosovitskiy & Brox 2016) are rebuilt with the module names of the Caffe layers, so
the converted Hugging Face state dicts (`upconvGAN_<name>.pt`) load (their key spellings: weights.normalise_keys).
Every generator maps a code of `code_shape` to an image in the original convention: BGR, ImageNet-mean-subtracted, 0-255 scale.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

SLOPE = 0.3  # leaky ReLU slope of every DeePSiM generator layer but the last


class Reshape(nn.Module):
    def __init__(self, *shape: int):
        super().__init__()
        self.shape = shape

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


def _lrelu():
    return nn.LeakyReLU(SLOPE)


def _upconv_tail(in_ch: int) -> list[tuple[str, nn.Module]]:
    """deconv5 ... deconv0 of the fc6/fc7/pool5 generators: 4x4 -> 256x256."""
    spec = [("deconv5", "t4", in_ch, 256), ("conv5_1", "t3", 256, 512), ("deconv4", "t4", 512, 256),
            ("conv4_1", "t3", 256, 256), ("deconv3", "t4", 256, 128), ("conv3_1", "t3", 128, 128),
            ("deconv2", "t4", 128, 64), ("deconv1", "t4", 64, 32), ("deconv0", "t4", 32, 3)]
    layers = []
    for name, kind, cin, cout in spec:
        k, p = (4, 1) if kind == "t4" else (3, 1)
        s = 2 if kind == "t4" else 1
        layers.append((name, nn.ConvTranspose2d(cin, cout, k, s, p)))
        if name != "deconv0":
            layers.append((f"relu_{name}", _lrelu()))
    return layers


def upconv_fc(code_len: int = 4096) -> nn.Sequential:
    """fc6/fc7 generator (code 4096) or fc8 (code 1000): 3 FC + 9 up-convolutions."""
    layers = [("defc7", nn.Linear(code_len, 4096)), ("relu_defc7", _lrelu()),
              ("defc6", nn.Linear(4096, 4096)), ("relu_defc6", _lrelu()),
              ("defc5", nn.Linear(4096, 4096)), ("relu_defc5", _lrelu()),
              ("reshape", Reshape(256, 4, 4))]
    return nn.Sequential(OrderedDict(layers + _upconv_tail(256)))


def upconv_pool5() -> nn.Sequential:
    """pool5 generator: code 256x6x6 -> 3 convolutions -> 512x4x4 -> the fc6 tail."""
    layers = [("Rconv6", nn.Conv2d(256, 512, 3, 1, 1)), ("Rrelu6", _lrelu()),
              ("Rconv7", nn.Conv2d(512, 512, 3, 1, 1)), ("Rrelu7", _lrelu()),
              ("Rconv8", nn.Conv2d(512, 512, 3, 1, 0)), ("Rrelu8", _lrelu())]
    return nn.Sequential(OrderedDict(layers + _upconv_tail(512)))


def upconv_conv34() -> nn.Sequential:
    """conv3/conv4 generator: code 384x13x13, ends in 255*tanh."""
    layers = [("Rconv6", nn.Conv2d(384, 384, 3)), ("Rrelu6", _lrelu()),
              ("Rconv7", nn.Conv2d(384, 512, 3)), ("Rrelu7", _lrelu()),
              ("Rconv8", nn.Conv2d(512, 512, 2)), ("Rrelu8", _lrelu()),
              ("deconv5", nn.ConvTranspose2d(512, 256, 4, 2, 1)), ("relu_deconv5", _lrelu()),
              ("conv5_1", nn.ConvTranspose2d(256, 256, 3, 1, 1)), ("relu_conv5_1", _lrelu()),
              ("deconv4", nn.ConvTranspose2d(256, 128, 4, 2, 1)), ("relu_deconv4", _lrelu()),
              ("conv4_1", nn.ConvTranspose2d(128, 128, 3, 1, 1)), ("relu_conv4_1", _lrelu()),
              ("deconv3", nn.ConvTranspose2d(128, 128, 4, 2, 1)), ("relu_deconv3", _lrelu()),
              ("conv3_1", nn.ConvTranspose2d(128, 128, 3, 1, 1)), ("relu_conv3_1", _lrelu()),
              ("deconv2", nn.ConvTranspose2d(128, 64, 4, 2, 1)), ("relu_deconv2", _lrelu()),
              ("conv2_1", nn.Conv2d(64, 32, 3, 1, 1)), ("relu_conv2_1", _lrelu()),
              ("deconv1", nn.ConvTranspose2d(32, 16, 4, 2, 1)), ("relu_deconv1", _lrelu()),
              ("conv1_1", nn.Conv2d(16, 3, 3, 1, 1)), ("tanh", nn.Tanh()), ("scaling", Scale(255.0))]
    return nn.Sequential(OrderedDict(layers))


def compact(code_shape: list[int] | tuple[int, ...], width: int = 32, out_size: int = 128,
            fc_width: int = 512) -> nn.Sequential:
    """A small generator for priors trained on a CPU: the DeePSiM recipe scaled down.

    Vector codes go through two FC layers to a 4x4 map. Spatial codes (C,H,W) go through two 3x3 convolutions at
    their own resolution and are resized to the next 4*2^k size (14 -> 16, 7 -> 8), so the image keeps the code's
    layout. Up-convolutions (4/2/1, each followed by a 3x3 conv) then double the size up to `out_size`, and the
    output is 255*tanh, BGR mean-subtracted like the originals.
    """
    layers: list[tuple[str, nn.Module]] = []
    base = width * 4
    if len(code_shape) == 1:
        size = 4
        layers += [("fc1", nn.Linear(code_shape[0], fc_width)), ("relu_fc1", _lrelu()),
                   ("fc2", nn.Linear(fc_width, base * 16)), ("relu_fc2", _lrelu()), ("reshape", Reshape(base, 4, 4))]
    else:
        c, h = code_shape[0], max(code_shape[1:])
        size = 4
        while size < h and size < out_size:
            size *= 2
        layers += [("conv_in1", nn.Conv2d(c, base, 3, 1, 1)), ("relu_in1", _lrelu()),
                   ("conv_in2", nn.Conv2d(base, base, 3, 1, 1)), ("relu_in2", _lrelu()),
                   ("resize", nn.Upsample(size=(size, size), mode="bilinear", align_corners=False))]
    ch, i = base, 0
    while size < out_size:
        nxt = max(width // 2, ch // 2) if size >= 16 else ch
        layers += [(f"up{i}", nn.ConvTranspose2d(ch, nxt, 4, 2, 1)), (f"relu_up{i}", _lrelu()),
                   (f"conv{i}", nn.Conv2d(nxt, nxt, 3, 1, 1)), (f"relu_conv{i}", _lrelu())]
        size, ch, i = size * 2, nxt, i + 1
    layers += [("to_rgb", nn.Conv2d(ch, 3, 3, 1, 1)), ("tanh", nn.Tanh()), ("scaling", Scale(255.0))]
    return nn.Sequential(OrderedDict(layers))


# name -> builder(**kwargs); a prior names its architecture and keyword arguments, so new ones plug in here.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "upconv_fc": upconv_fc,
    "upconv_pool5": upconv_pool5,
    "upconv_conv34": upconv_conv34,
    "compact": compact,
}


def build(arch: str, **kwargs) -> nn.Module:
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown generator architecture {arch!r}") from None
    return builder(**kwargs)


@torch.no_grad()
def responsive(gen: torch.nn.Module, code_shape, out_std: float = 60.0, seed: int = 0) -> torch.nn.Module:
    """Rescale each layer so its output has unit std on random codes (PyTorch's default init makes a deep
    generator's output almost independent of its code), and the image a visible std of `out_std`. For tests and
    benchmarks that need a generator whose pictures follow its code without trained weights."""
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
