"""Folding eval batch norms into the convolutions before them (the CPU fast path): the same outputs, layers that
are registered keep theirs, and a network where a convolution's output also goes elsewhere is left as it is."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dgnam_engine import accel as A
from dgnam_engine.batchnorm_fold import folded_copy


def _trained_bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():  # statistics far from the identity, so a fold that went wrong shows
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


class Tapped(nn.Module):
    """conv -> BN -> ReLU, plus the convolution's raw output added back: its norm cannot be folded."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), _trained_bn(4)

    def forward(self, x):
        y = self.conv(x)
        return torch.relu(self.bn(y)) + y


def test_folded_network_gives_the_same_output_and_keeps_protected_layers():
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(c1=nn.Conv2d(3, 8, 3, padding=1), b1=_trained_bn(8), r1=nn.ReLU(),
                                    c2=nn.Conv2d(8, 8, 3, padding=1, bias=False), b2=_trained_bn(8))).eval()
    x = torch.randn(2, 3, 12, 12)
    out = folded_copy(net, x, protected=set())
    assert isinstance(out.b1, nn.Identity) and isinstance(out.b2, nn.Identity)
    torch.testing.assert_close(out(x), net(x), rtol=1e-4, atol=1e-5)
    assert isinstance(net.b1, nn.BatchNorm2d)  # the original is untouched
    kept = folded_copy(net, x, protected={"c2"})  # c2 is a layer someone reads: its output stays pre-norm
    assert isinstance(kept.b1, nn.Identity) and isinstance(kept.b2, nn.BatchNorm2d)
    torch.testing.assert_close(kept.c2(kept.r1(kept.c1(x))), net.c2(net.r1(net.b1(net.c1(x)))), rtol=1e-4, atol=1e-5)


def test_a_convolution_whose_output_goes_elsewhere_too_keeps_its_norm():
    torch.manual_seed(1)
    net = Tapped().eval()
    assert folded_copy(net, torch.randn(1, 3, 8, 8), protected=set()) is net


def test_lite0_folded_on_the_fast_path_gives_the_same_class_scores_and_hidden_units(lite0):
    acc = A.Accel(fold_bn=True)  # fp32: only the folding differs from the plain path
    fast = A.prepare_target(lite0, acc)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.model.modules())  # every norm was folded
    x = torch.rand(1, 3, 256, 256) * 255 - 120
    for name in ("classifier", "blocks.3"):
        info = lite0.layer(name)
        units = torch.tensor([5])
        with torch.no_grad():
            ref = lite0.unit_activations(x, info, units, None if info.kind != "conv" else info.centre())
            got = fast.unit_activations(x, info, units, None if info.kind != "conv" else info.centre())
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)
