"""The demo priors committed in assets/priors: found offline, one is the default, and they work."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dgnam_engine import priors as P

ROOT = Path(__file__).resolve().parent.parent
DEMO = {"lite0-b3": ("blocks.3", "conv3"), "lite0-b5": ("blocks.5", "pool5"), "lite0-pooled": ("pooled", "fc6"),
        "lite0-logits": ("classifier", "fc7")}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dgnam_engine", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_listed_available_and_default():
    res = _cli("priors", "--json")
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    for name, (layer, depth) in DEMO.items():
        r = rows[name]
        assert r["available"] and r["kind"] == "trained" and r["encoder"] == f"efficientnet_lite0:{layer}"
        assert r["depth"] == depth and "small corpus" in r["note"] and "fetch fc6" in r["note"]
    assert not rows["fc6"]["available"]  # the test caches are empty: no original prior to fall back on
    assert [n for n, r in rows.items() if r["default"]] == [P.DEMO_DEFAULT]
    size = sum((P.DEMO_PRIORS_DIR / f"{n}.safetensors").stat().st_size for n in DEMO)
    assert size <= 60e6


def test_visualize_uses_demo_prior_offline(tmp_path):
    out = tmp_path / "x.png"
    res = _cli("visualize", "--model", "efficientnet_lite0", "--unit", "967", "--out", str(out), "--json",
               "--quiet", "--iters", "15")
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout.splitlines()[-1])
    assert d["prior"] == P.DEMO_DEFAULT and d["prior_kind"] == "trained"
    assert d["prior_file"].endswith(f"assets/priors/{P.DEMO_DEFAULT}.safetensors")
    assert d["activation_final"] > d["activation_start"]
    assert Image.open(out).size == (224, 224)


def test_dgnam_with_fc6_like_prior_raises_class_units(lite0):
    from dgnam_engine.runner import Settings, visualize

    prior = P.load_prior("lite0-pooled")
    res = visualize("efficientnet_lite0", [1, 417, 980], "classifier", Settings(n_iters=30), target=lite0,
                    prior=prior)
    for r in res:
        assert r.activation_final > r.activation_start + 0.5
        assert r.image.std() > 5  # a picture, not a flat field


def _heldout_photos() -> list[np.ndarray]:
    """Photos that the demo priors' split held out of training (see the cards) and that pip packages ship."""
    photos = []
    try:
        from sklearn.datasets import load_sample_image

        photos.append(load_sample_image("china.jpg"))
    except ImportError:
        pass
    try:
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
            photos.append(np.asarray(Image.open(f).convert("RGB")))
    except ImportError:
        pass
    if not photos:
        pytest.skip("scikit-learn / matplotlib (requirements-corpus.txt) ship the held-out photos")
    return photos


def _as_corpus(img: np.ndarray, size: int) -> np.ndarray:
    """The corpus conversion (short side 256) then the trainer's centre crop at the prior's size."""
    im = Image.fromarray(img)
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.LANCZOS)
    w, h = im.size
    c = min(w, h)
    im = im.crop(((w - c) // 2, (h - c) // 2, (w - c) // 2 + c, (h - c) // 2 + c))
    return np.asarray(im.resize((size, size), Image.LANCZOS))


@pytest.mark.parametrize("name", list(DEMO))
def test_heldout_reconstruction_beats_flat_image(name, lite0):
    from dgnam_engine.training.data import to_gen

    card = P.read_card(P.DEMO_PRIORS_DIR / f"{name}.safetensors")
    assert {"sklearn__china.jpg", "matplotlib__grace_hopper.jpg"} & set(card["training"].get("heldout_files", []))
    prior = P.load_prior(name)
    size = card["arch_kwargs"]["out_size"]
    x = to_gen(torch.from_numpy(np.stack([_as_corpus(p, size) for p in _heldout_photos()])))
    with torch.no_grad():
        code = lite0.forward_to(lite0.preprocess(x), lite0.layer(card["layer"]))
        rec = prior.generator(code)
    err = (rec - x).div(255).pow(2).mean().item()
    flat = (x.mean((2, 3), keepdim=True) - x).div(255).pow(2).mean().item()  # each photo's own mean colour
    assert err < flat
