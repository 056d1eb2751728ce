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


# --- the novelty figure's sanity cases (issue 27): decided in spaces the optimisation does not push ------------

@pytest.fixture(scope="module")
def espresso_from_the_coffee_photo(tmp_path_factory):
    """Espresso rendered from the coffee photo (the bell-pepper recipe's photo start: 30 steps, lr 1): it still
    visibly is that cup."""
    from dgnam_engine.runner import Settings, visualize

    photo = tmp_path_factory.mktemp("photo") / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(photo)
    (r,) = visualize("efficientnet_lite0", [967], None, Settings(prior="lite0-b3", init_image=str(photo),
                                                                 n_iters=30, lr_start=1.0))
    return r.image


def test_a_training_photo_is_a_copy_and_a_photo_start_that_still_shows_it_is_not_new(espresso_from_the_coffee_photo):
    coll = N.shipped()
    photo, started = N.check([skimage.data.coffee(), espresso_from_the_coffee_photo], coll, k=1)
    assert photo["verdict"] == "copy" and photo["novelty"] < 0.1 and photo["nearest"] == "skimage__coffee.jpg"
    # the old figure (the target's pooled features) called this 2.53, "a new picture"
    assert started["verdict"] in ("copy", "close") and started["nearest"] == "skimage__coffee.jpg"


def test_a_picture_of_another_class_from_noise_is_new(monkeypatch):
    from dgnam_engine import paper

    monkeypatch.delenv("DGNAM_ATLAS_DIR")  # the shipped atlas's pictures (DGN-AM from random codes, 200 steps)

    ctx = paper.Context([1, 281], model="efficientnet_lite0", prior="lite0-b3")
    made = paper.pictures(ctx, "efficientnet_lite0", [1, 281], paper.Settings(prior="lite0-b3"))  # the atlas's
    res = N.check([im for _, im in made], N.shipped(), k=1)
    assert [r["verdict"] for r in res] == ["new", "new"] and min(r["novelty"] for r in res) >= N.CLOSE
    rng = np.random.default_rng(0)
    (noise,) = N.check([(rng.random((224, 224, 3)) * 255).astype(np.uint8)], N.shipped(), k=1)
    assert noise["verdict"] == "new"  # coloured noise is no copy (the old raw-pixel check found it near gravel)


def test_neighbours_json_gives_the_verdict_and_the_novelty(tmp_path, capsys):
    pic = tmp_path / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(pic)
    assert cli.main(["neighbours", "--image", str(pic), "--json", "-k", "1"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d["verdict"] == "copy" and d["novelty"] < N.COPY and d["decided_by"] in N.DECIDING
    assert cli.main(["neighbours", "--image", str(pic), "-k", "1"]) == 0
    assert "a copy (nearest skimage__coffee.jpg" in capsys.readouterr().out


@pytest.mark.parametrize("copies,says", [(1, "has 1 photo to compare with: too small"), (2, "is degenerate")])
def test_a_one_photo_or_identical_photos_folder_is_refused_in_one_line(tmp_path, capsys, monkeypatch, copies, says):
    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(copies):
        Image.fromarray(skimage.data.chelsea()).save(photos / f"cat{i}.png")
    pic = tmp_path / "q.png"
    Image.fromarray(skimage.data.coffee()).save(pic)
    assert cli.main(["neighbours", "--image", str(pic), "--images", str(photos)]) == 2
    out = capsys.readouterr()
    errors = [line for line in out.err.splitlines() if not line.startswith("indexing ")]
    assert says in out.err and len(errors) == 1 and "novelty" not in out.out + out.err


def test_a_damaged_folder_index_is_set_aside_and_built_again(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "data"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "astronaut", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()).save(photos / f"{name}.jpg")
    pic = tmp_path / "q.png"
    Image.fromarray(skimage.data.chelsea()).save(pic)
    args = ["neighbours", "--image", str(pic), "--images", str(photos), "--json"]
    assert cli.main(args) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (cache,) = (tmp_path / "data" / "neighbours").glob("*.npz")
    cache.write_bytes(b"PK\x03\x04 not a zip any more")
    assert cli.main(args) == 0
    again = capsys.readouterr()
    assert "is damaged" in again.err and "set aside" in again.err and "Traceback" not in again.err
    assert json.loads(again.out.strip().splitlines()[-1]) == first
    assert (cache.parent / (cache.name + ".damaged")).read_bytes() == b"PK\x03\x04 not a zip any more"
    assert cache.is_file()


def test_an_unknown_prior_or_key_is_refused_with_what_exists(tmp_path, capsys):
    pic = tmp_path / "q.png"
    Image.fromarray(skimage.data.coffee()).save(pic)
    assert cli.main(["neighbours", "--image", str(pic), "--prior", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown prior 'nope'" in err and "lite0-b3" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["neighbours", "--key", "f" * 32]) == 2
    err = capsys.readouterr().err
    assert "store list" not in err and "visualize ... --json" in err
