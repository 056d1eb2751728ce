"""The memorisation check: nearest photos in deep feature space and pixel space, and the novelty figure."""
from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

from dgnam_engine import cli
from dgnam_engine import neighbours as N


def test_nearest_and_novelty_on_a_collection_of_known_geometry():
    # four photos on a line at 0, 1, 3, 6: nearest-neighbour distances 1, 1, 2, 3 -> median 1.5
    coll = np.array([[0.0, 0], [1, 0], [3, 0], [6, 0]])
    assert N.median_nn(coll) == pytest.approx(1.5)
    (row,) = N.nearest(np.array([[2.6, 0.0]]), coll, 3)
    assert [j for j, _ in row] == [2, 1, 0]
    assert [d for _, d in row] == pytest.approx([0.4, 1.6, 2.6])
    # the distances are Euclidean in every dimension, not only along the line
    assert N.distances(np.array([[3.0, 4.0]]), coll)[0, 0] == pytest.approx(5.0)


def test_a_training_photo_finds_itself_in_the_shipped_collection():
    coll = N.shipped()
    assert len(coll.photos) == coll.features.shape[0] >= 250 and coll.space == ("efficientnet_lite0", "pooled")
    (res,) = N.check([skimage.data.coffee()], coll, k=3)
    # the shipped photo went through a resize and JPEG: not exactly 0, but far nearer than any other photo
    assert res["deep"][0]["file"] == "skimage__coffee.jpg" and res["pixel"][0]["file"] == "skimage__coffee.jpg"
    assert res["novelty"] < 0.25
    assert res["deep"][1]["distance"] > 5 * res["deep"][0]["distance"]


def test_only_photos_whose_licence_allows_it_ship_a_thumbnail_and_cc_by_ones_are_credited():
    coll = N.shipped()
    by_file = {p["file"]: p for p in coll.photos}
    assert by_file["skimage__coffee.jpg"].get("thumb") is not None
    sa = [p for p in coll.photos if p["licence"].startswith(("CC-BY-SA", "GPL", "FDL", "GNU-FDL"))]
    assert sa and all(p.get("thumb") is None for p in sa)
    assert "danielbuechele" in by_file["sklearn__china.jpg"]["credit"]


def test_neighbours_cli_against_a_folder_indexes_once_and_reuses(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(skimage.data.chelsea()).save(photos / "cat.jpg")
    Image.fromarray(skimage.data.astronaut()).save(photos / "astronaut.jpg")
    Image.fromarray(skimage.data.rocket()).save(photos / "rocket.jpg")
    pic = tmp_path / "q.png"
    Image.fromarray(skimage.data.chelsea()).save(pic)
    args = ["neighbours", "--image", str(pic), "--images", str(photos), "-k", "2", "--json"]
    assert cli.main(args) == 0
    first = capsys.readouterr()
    d = json.loads(first.out.strip().splitlines()[-1])
    assert d["photos"] == 3 and d["deep"][0]["file"] == "cat.jpg"
    assert d["deep"][0]["distance"] < 0.2 * d["deep"][1]["distance"]
    assert "indexing" in first.err
    cache = list((tmp_path / "data" / "neighbours").glob("*.npz"))
    assert len(cache) == 1
    assert cli.main(args) == 0
    again = capsys.readouterr()
    assert "indexing" not in again.err and json.loads(again.out.strip().splitlines()[-1]) == d


def test_neighbours_cli_says_what_is_missing(tmp_path, capsys):
    assert cli.main(["neighbours", "--image", str(tmp_path / "nope.png")]) == 2
    assert "picture not found" in capsys.readouterr().err
    assert cli.main(["neighbours"]) == 2
    assert "--image" in capsys.readouterr().err
