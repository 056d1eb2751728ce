"""Facets: a deterministic k-means on the unit's top photos, one picture per cluster, and their diversity."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image

from dgnam_engine import cli
from dgnam_engine import facets as F


def test_kmeans_splits_known_clusters_whatever_their_order():
    rng = np.random.RandomState(0)
    a = rng.normal(0, 0.1, (4, 5)) + 10
    b = rng.normal(0, 0.1, (3, 5)) - 10
    c = rng.normal(0, 0.1, (2, 5)) + np.array([10, -10, 0, 0, 0])
    x = np.concatenate([a, b, c])
    perm = rng.permutation(len(x))
    labels, centres = F.kmeans(x[perm], 3)
    groups = {frozenset(perm[labels == j]) for j in range(3)}
    assert groups == {frozenset(range(4)), frozenset(range(4, 7)), frozenset(range(7, 9))}
    assert np.array_equal(F.kmeans(x[perm], 3)[0], labels)  # deterministic
    with pytest.raises(Exception):
        F.kmeans(x, 10)


def test_diversity_is_the_mean_pairwise_distance():
    assert F.diversity(np.array([[0.0, 0], [3, 4], [0, 8]])) == pytest.approx((5 + 8 + 5) / 3)
    assert F.diversity(np.array([[1.0, 2.0]])) == 0.0


def test_visualize_facets_renders_one_picture_per_cluster(tmp_path, capsys):
    photos = []
    for name in ("coffee", "chelsea", "astronaut", "rocket"):
        p = tmp_path / f"{name}.jpg"
        Image.fromarray(getattr(skimage.data, name)()).save(p)
        photos.append(str(p))
    f = F.render("efficientnet_lite0", 967, 2, photos=photos)
    assert len(f.images) == 2 and sorted(len(c) for c in f.clusters) in ([1, 3], [2, 2])
    assert sum(len(c) for c in f.clusters) == 4 and f.diversity > 0
    assert cli.main(["visualize", "--model", "efficientnet_lite0", "--unit", "967,968", "--facets", "2",
                     "--out", str(tmp_path / "x.png")]) == 2
    assert "one --unit" in capsys.readouterr().err
