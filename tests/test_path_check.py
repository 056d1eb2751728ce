"""The per-picture check (path_check): a photo of the class reaches its unit the way the unit's top photos do, one
layer down ("same path"); coloured noise does not ("another path"). The photos are scikit-image's, left out of the
pool the check compares with (they are among the shipped training photos)."""
from __future__ import annotations

import numpy as np
import pytest

from dgnam_engine import path_check as P
from dgnam_engine import quiz as Q


@pytest.fixture(scope="module")
def pool():
    full = Q.shipped_pool()
    return full.subset([i for i, f in enumerate(full.files) if not f.startswith("skimage__")])


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_a_photo_of_the_class_passes_and_coloured_noise_does_not(pool, lite0, name, tmp_path):
    import skimage.data

    from dgnam_engine.convention import from_uint8

    photo = getattr(skimage.data, name)()
    unit = int(lite0.classify(from_uint8(photo)).argmax())  # the class Lite0 sees in it (Egyptian cat, espresso)
    got = P.check(photo, unit, pool)
    assert got["word"] == "same path" and got["number"] >= P.PASS_AT, got
    assert not any(f.startswith("skimage__") for f in got["top_photos"])
    noise = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    bad = P.check(noise, unit, pool)
    assert bad["word"] == "another path" and bad["number"] < P.PASS_AT, bad
    assert P.describe(got).startswith(f"same path ({got['number']:.2f}): one layer down")


def test_a_check_is_kept_with_the_results(tmp_path, monkeypatch):
    import skimage.data

    photo = skimage.data.coffee()
    first = P.for_result(tmp_path, "k" * 32, photo, 967)
    assert P.stored(tmp_path, "k" * 32) == first
    monkeypatch.setattr(P, "check", lambda *a: pytest.fail("checked again instead of read"))
    assert P.for_result(tmp_path, "k" * 32, photo, 967) == first
