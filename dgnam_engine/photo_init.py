"""Starting DGN-AM from a real photo (the paper's third example, `3_start_from_real_image.sh`): encode the photo with
the prior's own encoder at the prior's layer, clip the code to the prior's bounds, and optimise from there. The
picture then changes from the photo into what the unit wants, which shows what the unit adds."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .convention import from_uint8, gen_to_rgb
from .errors import UserError
from .photos import square
from .priors import Prior
from .targets import Target

# The original runs 30 steps from a photo with a start learning rate of 1 instead of 8 (spec section 1.6): large
# steps would forget the photo in a few iterations.
PHOTO_ITERS = 30
PHOTO_LR_FACTOR = 1 / 8


@dataclass
class PhotoStart:
    code: torch.Tensor  # (*code_shape,) on the prior's device, inside the bounds
    photo_gen: torch.Tensor  # (1,3,S,S) the photo in the generator convention, at the generator's output size


def encoder_of(prior: Prior) -> tuple[str, str]:
    model, _, layer = prior.spec.encoder.partition(":")
    if not model or not layer:
        raise UserError(f"prior {prior.name} does not say which encoder it inverts, so it cannot start from a photo")
    return model, layer


@torch.no_grad()
def output_size(prior: Prior) -> int:
    code = torch.zeros(1, *prior.spec.code_shape, device=prior.lower.device)
    return int(prior.generator(code).shape[-1])


@torch.no_grad()
def encode_photo(prior: Prior, encoder: Target, rgb: np.ndarray) -> PhotoStart:
    """The photo's code E(x) at the prior's layer: the photo is shown to the encoder exactly as a generated picture
    would be (centre square at the generator's output size, then the encoder's own crop and normalisation)."""
    _, layer_name = encoder_of(prior)
    layer = encoder.layer(layer_name)
    size = output_size(prior)
    sq = from_uint8(square(rgb, size))
    photo_gen = encoder.rgb_to_gen(sq.to(encoder.device))
    code = encoder.forward_to(encoder.preprocess(photo_gen), layer).float()[0]
    if tuple(code.shape) != tuple(prior.spec.code_shape):
        raise UserError(f"{encoder.name}:{layer.name} gives codes of shape {tuple(code.shape)}, but prior "
                        f"{prior.name} takes {tuple(prior.spec.code_shape)}")
    dev = prior.lower.device
    # Caffe's ReLUs run in place, so the original codes are post-ReLU: the [0, bound] box of the original priors
    # is exactly that ReLU plus the 3-std cap.
    code = torch.minimum(torch.maximum(code.to(dev), prior.lower), prior.upper)
    return PhotoStart(code, photo_gen.to(dev))


def pixel_error(a_gen: torch.Tensor, b_gen: torch.Tensor, target: Target) -> float:
    """Mean absolute difference, in [0, 1], of two generator-convention images as the target sees them."""
    a, b = gen_to_rgb(target.crop(a_gen.float())), gen_to_rgb(target.crop(b_gen.float()))
    return float((a - b).abs().mean())
