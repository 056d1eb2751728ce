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


def test_visualize_facets_honours_iters_and_device_and_refuses_what_it_cannot_use(tmp_path, capsys, monkeypatch):
    import json

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee", "chelsea", "astronaut", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()).save(photos / f"{name}.jpg")
    files = [str(p) for p in sorted(photos.iterdir())]
    monkeypatch.setattr(F, "top_photos", lambda model, layer, unit, progress=None: files)
    out = tmp_path / "f.png"
    base = ["visualize", "--model", "efficientnet_lite0", "--unit", "967", "--facets", "2", "--out", str(out),
            "--quiet", "--json", "--device", "cpu"]
    assert cli.main(base + ["--iters", "3"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d["steps"] == 3  # before: always the photo-start schedule's 30
    assert cli.main(base + ["--iters", "1"]) == 0
    d1 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d1["steps"] == 1 and d1["facets"][0]["activation"] != d["facets"][0]["activation"]
    for extra, says in ((["--weights", str(tmp_path / "w.pth")], "leave out --weights"),
                        (["--seed", "5"], "leave out --seed")):
        assert cli.main(base + extra) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1
