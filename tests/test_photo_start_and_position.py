"""Beyond a class unit from noise: start from a real photo, maximise a hidden unit at a chosen position and cut the
picture to its receptive field; every number checked before any work; photos that are not photos refused."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgnam_engine.errors import UserError
from dgnam_engine.photos import read_photo
from dgnam_engine.runner import Settings, visualize

ROOT = Path(__file__).resolve().parent.parent
SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"
COFFEE = SKIMAGE_DATA / "coffee.png"  # a real photo of a cup of coffee that ships with scikit-image


def cli(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DGNAM_DATA_DIR=str(tmp / "data"))
    return subprocess.run([sys.executable, "-m", "dgnam_engine", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_start_from_a_photo_starts_near_it_and_raises_the_unit(tmp_path):
    out = tmp_path / "x.png"
    p = cli(["visualize", "--model", "efficientnet_lite0", "--unit", "309", "--init-image", str(COFFEE),
             "--out", str(out), "--json", "--quiet"], tmp_path)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout.strip().splitlines()[-1])
    extra = d["extra"]
    assert extra["init_image"] == str(COFFEE.resolve())
    # The photo's code reconstructs the photo far better than a random code does: the run starts near the photo.
    assert extra["start_pixel_error"] < 0.5 * extra["random_start_pixel_error"], extra
    assert d["activation_final"] > d["activation_start"] + 5, d["activations"]
    assert d["n_iters"] == 30 and out.is_file()


def test_a_photo_start_is_keyed_with_the_steps_it_really_takes():
    """A photo start takes photo_init.PHOTO_ITERS (30) steps unless told: it is keyed so, apart from a
    200-step photo start (before, both were keyed as 200 steps)."""
    from dgnam_engine.photo_init import PHOTO_ITERS
    from dgnam_engine.request import Request

    def ident(n_iters):
        s = Settings(prior="lite0-b3", init_image=str(COFFEE), n_iters=n_iters)
        return Request("efficientnet_lite0", [309], None, s).identities("cpu")[0]

    default, thirty, two_hundred = ident(None), ident(PHOTO_ITERS), ident(200)
    assert PHOTO_ITERS == 30 and default.settings["n_iters"] == 30
    assert default.key == thirty.key and default.key != two_hundred.key


def test_photo_start_gives_photo_and_reconstruction_images(lite0):
    from dgnam_engine.runner import get_prior

    (r,) = visualize("efficientnet_lite0", [967], settings=Settings(init_image=str(COFFEE), n_iters=3),
                     target=lite0, prior=get_prior("lite0-b3"))
    assert r.photo.shape == r.reconstruction.shape == r.image.shape == (224, 224, 3)
    # the reconstruction resembles the photo more than the final picture of 3 small steps differs from it
    err = np.abs(r.photo.astype(float) - r.reconstruction.astype(float)).mean() / 255
    assert err == pytest.approx(r.extra["start_pixel_error"], abs=0.02)
    assert "photo" not in r.summary() and "reconstruction" not in r.summary()


def _map(target, layer, image: np.ndarray, channel: int) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    with torch.no_grad():
        return target.forward_to(target.preprocess(target.rgb_to_gen(x)), layer)[0, channel].float()


def test_hidden_unit_at_a_position_rises_there_more_than_far_away(lite0):
    first = {}

    def keep_first(info):
        if info.step == 0:
            first["image"] = (info.images[0].permute(1, 2, 0).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)

    (r,) = visualize("efficientnet_lite0", [7], "blocks.5", Settings(position=(2, 5), n_iters=40, accel="plain"),
                     target=lite0, callback=keep_first, preview_every=40)
    layer = lite0.layer("blocks.5")
    before, after = _map(lite0, layer, first["image"], 7), _map(lite0, layer, r.image, 7)
    rise = after - before
    assert rise[2, 5] > 0 and rise[2, 5] > rise[6, 0] + 1.0, (rise[2, 5], rise[6, 0])
    assert r.extra["position"] == [2, 5]


def test_receptive_field_of_caffenet_conv5_is_the_originals_crop():
    """4_activate_hidden.sh cuts conv5 at (6, 6) to 163x163 px at +32+32 of the 227 px picture."""
    from dgnam_engine.receptive_field import receptive_field
    from dgnam_engine.runner import get_target

    t = get_target("caffenet", random_weights=True)
    assert receptive_field(t, t.layer("conv5"), (6, 6)) == (32, 32, 195, 195)
    top, left, bottom, right = receptive_field(t, t.layer("conv1"), (0, 0))
    assert (top, left, bottom - top, right - left) == (0, 0, 11, 11)  # one 11x11 kernel at stride 4


def test_xy_writes_the_receptive_field_crop(tmp_path):
    out = tmp_path / "u.png"
    p = cli(["visualize", "--model", "caffenet", "--random-weights", "--layer", "conv5", "--unit", "3",
             "--xy", "6", "--iters", "2", "--out", str(out), "--json", "--quiet"], tmp_path)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout.strip().splitlines()[-1])
    assert d["extra"]["receptive_field"] == [32, 32, 195, 195] and d["extra"]["position"] == [6, 6]
    with Image.open(d["rf_image"]) as im:
        assert im.size == (163, 163)
    with Image.open(out) as whole, Image.open(d["rf_image"]) as crop:
        assert np.array_equal(np.asarray(whole)[32:195, 32:195], np.asarray(crop))


BAD = {
    "negative seed": (["--seed", "-1"], ["seed -1", "0 to"]),
    "zero steps": (["--iters", "0"], ["steps", "between 1"]),
    "zero lr": (["--lr", "0"], ["learning rate", "above 0"]),
    "nan lr": (["--lr", "nan"], ["learning rate"]),
    "xy on a class layer": (["--xy", "1,1"], ["position", "convolutional"]),
    "bad xy": (["--xy", "a,b"], ["--xy"]),
    "out under a file": (["--out", "{tmp}/file/x.png"], ["cannot write", "not a folder"]),
    "pixel from a photo": (["--method", "pixel", "--init-image", str(COFFEE)], ["photo", "pixel"]),
    "photo missing": (["--init-image", "{tmp}/nope.jpg"], ["photo not found", "nope.jpg"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_numbers_are_one_line_before_any_work(case, tmp_path):
    """In process (the checks come before any model is loaded): exit 2, one line, nothing written."""
    from dgnam_engine.cli import main

    (tmp_path / "file").write_text("a file, not a folder")
    args, words = BAD[case]
    argv = ["visualize", "--model", "caffenet", "--random-weights", "--unit", "1", "--iters", "2", "--quiet",
            "--out", str(tmp_path / "x.png")] + [a.format(tmp=tmp_path) for a in args]
    before = sorted(os.listdir(tmp_path))
    import contextlib

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    lines = err.getvalue().strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err.getvalue()
    for w in words:
        assert w in lines[0], lines[0]
    assert sorted(os.listdir(tmp_path)) == before


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def test_photos_that_are_not_photos_get_one_line(tmp_path):
    good = _png(64, 48)
    assert read_photo(good).shape == (48, 64, 3)
    cases = {"truncated": COFFEE.read_bytes()[:5000], "text": b"hello, not an image\n" * 10, "empty": b"",
             "tiny": _png(2, 2)}
    # A decompression bomb: a valid PNG header claiming 100k x 100k pixels (10 gigapixels).
    bomb = bytearray(_png(64, 64))
    bomb[16:24] = (100_000).to_bytes(4, "big") * 2
    cases["bomb"] = bytes(bomb)
    for name, data in cases.items():
        with pytest.raises(UserError) as e:
            read_photo(data, name=f"{name}.png")
        msg = str(e.value)
        assert f"{name}.png" in msg and "\n" not in msg, msg
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(31 * 2**20)
    with pytest.raises(UserError, match="larger than"):
        read_photo(big)


def test_caffenet_hidden_layers_are_read_after_their_relu_like_caffe_blobs():
    from dgnam_engine.runner import get_target

    t = get_target("caffenet", random_weights=True)
    x = torch.randn(2, 3, 227, 227) * 50
    for name in ("conv1", "conv5", "fc6", "fc7"):
        out = t.forward_to(x, t.layer(name))
        assert float(out.min()) == 0.0, name  # post-ReLU, and some units are off: exactly 0
    assert float(t.forward_to(x, t.layer("fc8")).min()) < 0  # the class scores have no ReLU
    assert t.layer("pool5").shape == (256, 6, 6)  # the pool5 prior's code, for starting from a photo
