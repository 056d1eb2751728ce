"""Realism: how far a picture's per-layer statistics are from a network's batch-norm running statistics."""
from __future__ import annotations

import numpy as np
import skimage.data
from PIL import Image, ImageFilter

from dgnam_engine import realism as R


def test_real_photos_score_best_coloured_noise_worst_and_a_blurred_photo_between():
    photos = [getattr(skimage.data, n)() for n in ("coffee", "chelsea", "astronaut", "rocket")]
    blurred = [np.array(Image.fromarray(p).filter(ImageFilter.GaussianBlur(6))) for p in photos]
    rng = np.random.default_rng(0)
    noise = [(rng.random((224, 224, 3)) * 255).astype(np.uint8) for _ in range(2)]
    d_photo, d_blur, d_noise = R.distances(photos), R.distances(blurred), R.distances(noise)
    assert all(b > p for p, b in zip(d_photo, d_blur))  # each photo is more natural than its blurred copy
    assert np.mean(d_photo) < np.mean(d_blur) < np.mean(d_noise)
    assert max(d_photo + d_blur) < min(d_noise)


def test_the_figure_is_the_same_for_the_same_picture_in_any_batch():
    a, b = skimage.data.coffee(), skimage.data.chelsea()
    assert R.distances([a])[0] == R.distances([b, a])[1]
