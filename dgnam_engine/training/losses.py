"""The three DeePSiM losses (spec section 2.6), scaled for small CPU runs.

- image loss: mean squared pixel error, pixels scaled to [0,1];
- feature loss: mean squared error between comparator features of the generated and the real image, divided by
  the mean square of the real features so its size does not depend on the comparator layer;
- adversarial loss: a small discriminator tells real crops from generated ones (non-saturating logistic loss).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..convention import gen_to_rgb
from ..targets import Target


class Comparator(nn.Module):
    """A frozen network truncated at one layer; it sees images the way the encoder does (`preprocess`), at the
    generator's own resolution, which keeps it cheap on a CPU."""

    def __init__(self, target: Target, layer: str):
        super().__init__()
        self.target = target
        self.layer = target.layer(layer)

    def forward(self, x_gen: torch.Tensor) -> torch.Tensor:
        t = self.target
        rgb = gen_to_rgb(x_gen, clamp=False)
        m = x_gen.new_tensor(t.spec.mean).view(1, 3, 1, 1)
        s = x_gen.new_tensor(t.spec.std).view(1, 3, 1, 1)
        return t.forward_to((rgb - m) / s, self.layer)


class Discriminator(nn.Module):
    """DeePSiM's D scaled down: strided convolutions to a 4x4 map, average pool, one logit."""

    def __init__(self, width: int = 32):
        super().__init__()
        chans = [3, width, width * 2, width * 4, width * 4, width * 4]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(chans[-1], 1)

    def forward(self, x_gen: torch.Tensor) -> torch.Tensor:
        h = self.features(x_gen / 128.0)
        return self.out(h.mean((2, 3))).squeeze(1)


def image_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(fake / 255.0, real / 255.0)


def feature_loss(f_fake: torch.Tensor, f_real: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(f_fake, f_real) / f_real.pow(2).mean().clamp_min(1e-8)


def d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-d_real).mean() + F.softplus(d_fake).mean()


def g_adv_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-d_fake).mean()
