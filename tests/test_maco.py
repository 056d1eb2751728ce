"""MACO, the third method of the one loop: it raises the unit on the real Lite0, the same request gives the same
bytes, a unit gets the same picture alone and in a batch, a run can be cancelled, its alpha map is saved beside the
picture (command line and results store), and its optimiser is NAdam as torch computes it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dgnam_engine import maco
from dgnam_engine.errors import RunCancelled, UserError
from dgnam_engine.imaging import png_bytes
from dgnam_engine.runner import Settings, visualize
from dgnam_engine.store import ResultsStore

ROOT = Path(__file__).resolve().parent.parent
STEPS = 3  # each step is 6 crops through Lite0: a few steps keep these tests to seconds


def test_same_request_twice_gives_the_same_bytes(lite0):
    s = Settings(method="maco", n_iters=STEPS, seed=3)
    (a,) = visualize("efficientnet_lite0", [309], settings=s, target=lite0)
    (b,) = visualize("efficientnet_lite0", [309], settings=s, target=lite0)
    assert png_bytes(a.image) == png_bytes(b.image)
    assert png_bytes(a.alpha) == png_bytes(b.alpha)
    (other,) = visualize("efficientnet_lite0", [309], settings=Settings(method="maco", n_iters=STEPS, seed=4),
                         target=lite0)
    assert png_bytes(other.image) != png_bytes(a.image)  # the seed matters: phase, crops and noise are its own


def test_alone_and_in_a_batch_give_the_same_picture(lite0):
    s = Settings(method="maco", n_iters=STEPS)
    (alone,) = visualize("efficientnet_lite0", [309], settings=s, target=lite0)
    batch = visualize("efficientnet_lite0", [1, 309, 985], settings=s, target=lite0)
    assert png_bytes(alone.image) == png_bytes(batch[1].image)
    assert np.array_equal(alone.alpha, batch[1].alpha)
    assert alone.activations == batch[1].activations
    assert png_bytes(batch[0].image) != png_bytes(batch[1].image)


def test_a_cancelled_run_returns_nothing(lite0):
    seen = []

    def stop_at_two(info):
        seen.append(info.step)
        return info.step < 1

    with pytest.raises(RunCancelled):
        visualize("efficientnet_lite0", [309], settings=Settings(method="maco", n_iters=50), target=lite0,
                  callback=stop_at_two)
    assert seen == [0, 1]  # stopped at the second step, not after 50


def test_cli_maco_raises_the_unit_and_writes_its_alpha_map(tmp_path):
    """The issue's command (with fewer steps): no --out writes into the current folder, named by unit and method."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "dgnam_engine", "visualize", "--model", "efficientnet_lite0",
                        "--unit", "309", "--method", "maco", "--json", "--iters", "12", "--quiet"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout.strip().splitlines()[-1])
    assert d["prior"] == "maco" and d["n_iters"] == 12 and d["lr_start"] == 1.0
    assert d["activation_final"] > d["activation_start"] + 1, d["activations"]
    assert d["second_opinion"]["judge"] == "efficientnet_lite2" and d["second_opinion"]["intended"] == 309
    out = tmp_path / "efficientnet_lite0_classifier_0309_maco.png"
    assert d["image"] == "efficientnet_lite0_classifier_0309_maco.png" and out.is_file()
    assert d["alpha_image"] == "efficientnet_lite0_classifier_0309_maco_alpha.png"
    assert sorted(f.name for f in tmp_path.iterdir()) == [d["image"], d["alpha_image"]]
    from PIL import Image

    with Image.open(tmp_path / d["alpha_image"]) as im:
        alpha = np.asarray(im)
    assert alpha.shape == (224, 224) and alpha.max() == 255 and alpha.std() > 5  # a map, not a flat field


def test_maco_refuses_a_photo_start():
    with pytest.raises(UserError, match="maco method has none"):
        visualize("efficientnet_lite0", [309], settings=Settings(method="maco", init_image="x.jpg"))


def identify(model, unit, layer, settings, seed, **kw):
    from dgnam_engine.request import Request, resolve

    [ident] = resolve(Request(model, [unit], layer, settings, [seed], **kw)).identities()
    return ident


def test_the_store_keeps_the_alpha_map_beside_the_picture(lite0, tmp_path):
    s = Settings(method="maco", n_iters=2)
    (r,) = visualize("efficientnet_lite0", [309], settings=s, target=lite0)
    store = ResultsStore(tmp_path / "data", atlases=[])
    ident = r.identity  # the key of the run as it was resolved
    stored = store.put(r, ident.key, ident.settings, ident.weights_id)
    assert stored.prior == "maco" and stored.settings["method"] == "maco" and stored.settings["n_iters"] == 2
    assert stored.alpha_path == tmp_path / "data" / "images" / f"{ident.key}_alpha.png"
    assert stored.alpha_path.read_bytes() == png_bytes(r.alpha)
    # keyed apart from the pixel baseline and by its spectrum file, which plays the prior
    pixel = identify("efficientnet_lite0", 309, None, Settings(method="pixel", n_iters=2), 0, device="cpu")
    assert pixel.key != ident.key and ident.prior_id.startswith("maco@magnitude.npy:")
    assert identify("efficientnet_lite0", 309, None, Settings(method="maco"), 0).settings["n_iters"] == 256


def test_nadam_steps_like_torch_nadam():
    torch.manual_seed(0)
    target = torch.randn(50)
    mine, theirs = torch.zeros(50), torch.zeros(50, requires_grad=True)
    state = maco._Nadam()
    opt = torch.optim.NAdam([theirs], lr=0.1)
    for _ in range(20):  # maximise -|x - target|^2: ascent on our side, descent of the loss on torch's
        mine = state.step(mine, -2 * (mine - target), 0.1)
        opt.zero_grad()
        ((theirs - target) ** 2).sum().backward()
        opt.step()
    assert torch.allclose(mine, theirs.detach(), atol=1e-6)


def test_the_shipped_spectrum_is_natural():
    """Magnitude falls with frequency (about 1/f, as in photos), and the colour matrix maps onto RGB."""
    mag, colour = maco.load_spectrum(224)
    f = torch.fft.fftfreq(224).abs()
    radius = torch.sqrt(f.view(-1, 1) ** 2 + torch.fft.rfftfreq(224).view(1, -1) ** 2)
    low = mag[:, (radius > 0.02) & (radius < 0.05)].mean()
    high = mag[:, radius > 0.4].mean()
    assert low > 10 * high
    assert colour.shape == (3, 3) and torch.linalg.matrix_rank(colour) == 3
    small, _ = maco.load_spectrum(64)  # resized around f = 0 for another picture size
    assert small.shape == (3, 64, 33) and small[:, 1:3, 1:3].mean() > small[:, 30:34, 25:].mean()
