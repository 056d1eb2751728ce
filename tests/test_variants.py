"""The DGN-AM variants (issue 26, dgnam_engine/variants.py) on the real EfficientNet-Lite0 with the demo prior:
each raises the unit's own activation on the default (fast, bf16) path and the plain one, gives the same picture
for the same request, is keyed apart from the paper's pictures, and the batch-norm term is the same number whether
or not the fast path folded the norms into the convolutions. The paper's own steps are pinned by
tests/test_dgnam.py (the hand-computed act_max.py rule), which the variants leave alone."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import ROOT
from dgnam_engine import accel as A
from dgnam_engine import dgnam, variants
from dgnam_engine.convention import from_uint8
from dgnam_engine.errors import UserError
from dgnam_engine.request import Request, resolve
from dgnam_engine.runner import Settings, get_prior, visualize

GOLDFISH = 1
STEPS = 12


@pytest.fixture(scope="module")
def demo_prior():
    return get_prior("lite0-b3")


def _start_activation(lite0, prior, unit: int) -> float:
    """The unit's activation in the picture the run starts from (G(h0) for seed 0, cropped as the target sees it)."""
    with torch.no_grad():
        x = prior.generator(dgnam.initial_codes([0], prior.lower.shape)).float()
        return float(lite0.unit_activations(x, lite0.layer(None), torch.tensor([unit])))


def _activation(lite0, image: np.ndarray, unit: int) -> float:
    with torch.no_grad():
        return float(lite0.unit_activations(lite0.rgb_to_gen(from_uint8(image)), lite0.layer(None),
                                            torch.tensor([unit])))


@pytest.mark.parametrize("path", ["auto", "plain"])
@pytest.mark.parametrize("variant", ["robust", "bn", "robust-bn"])
def test_each_variant_raises_the_units_activation(lite0, demo_prior, variant, path):
    s = Settings(prior="lite0-b3", n_iters=STEPS, accel=path, **variants.PRESETS[variant])
    (r,) = visualize("efficientnet_lite0", [GOLDFISH], settings=s, target=lite0, prior=demo_prior)
    start = _start_activation(lite0, demo_prior, GOLDFISH)
    final = _activation(lite0, r.image, GOLDFISH)  # in the saved picture, by the plain network
    assert final > start + 3, (variant, path, start, final)
    assert r.activation_final > r.activation_start  # what the run reports is the unit's activation too


def test_a_variant_gives_the_same_picture_for_the_same_request_and_another_than_the_paper(lite0, demo_prior):
    s = Settings(prior="lite0-b3", n_iters=6, **variants.PRESETS["robust-bn"])
    (first,) = visualize("efficientnet_lite0", [GOLDFISH], settings=s, target=lite0, prior=demo_prior)
    batch = visualize("efficientnet_lite0", [309, GOLDFISH], settings=s, target=lite0, prior=demo_prior)
    assert np.array_equal(first.image, batch[1].image)  # beside another unit: the same views, the same picture
    assert first.activations == batch[1].activations
    (paper,) = visualize("efficientnet_lite0", [GOLDFISH], settings=Settings(prior="lite0-b3", n_iters=6),
                         target=lite0, prior=demo_prior)
    assert not np.array_equal(first.image, paper.image)


def test_views_are_drawn_from_the_seed_and_the_step_alone():
    x = torch.randn(2, 3, 256, 256)
    a = variants.draw_views(x, [0, 7], 3, 2, 224)
    assert a.shape == (4, 3, 224, 224)
    assert torch.equal(a, variants.draw_views(x, [0, 7], 3, 2, 224))
    assert torch.equal(a[2:], variants.draw_views(x[1:], [7], 3, 2, 224))  # sample 7's views alone
    assert not torch.equal(a, variants.draw_views(x, [0, 7], 4, 2, 224))  # the next step: other views


def test_the_batch_norm_term_is_the_same_with_the_norms_folded(lite0, demo_prior):
    """On the fast path the norms are gone (folded into the convolutions); the term reads them there instead."""
    layer = lite0.layer(None)
    with torch.no_grad():
        x = demo_prior.generator(dgnam.initial_codes([0], demo_prior.lower.shape)).float()
        plain = variants.BNStats(lite0, lite0, layer)
        _, ref = plain.forward(lite0.preprocess(x), 1)
        fp32 = replace(A.for_device("cpu"), dtype="float32", fast_linear=False, packed=False)
        folded_target = A.prepare_target(lite0, fp32)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded_target.model.modules()
                       if type(m) is torch.nn.BatchNorm2d)  # folded: no plain norm left to hook
        folded = variants.BNStats(lite0, folded_target, layer)
        _, got = folded.forward(folded_target.preprocess(x), 1)
        fast = A.prepare_target(lite0, A.for_device("cpu"))  # the default: bf16 as well
        _, low = variants.BNStats(lite0, fast, layer).forward(fast.preprocess(x), 1)
    assert plain.count == folded.count > 40  # every norm of Lite0 is read, on both paths
    assert float(ref) > 1
    assert float(got) == pytest.approx(float(ref), rel=1e-3)
    assert float(low) == pytest.approx(float(ref), rel=2e-2)


def test_variant_settings_are_keyed_apart_and_the_papers_keys_do_not_change():
    paper = resolve(Request("efficientnet_lite0", [GOLDFISH], settings=Settings(prior="lite0-b3")))
    assert "views" not in paper.key_settings() and "bn_weight" not in paper.key_settings()
    keys = {name: resolve(Request("efficientnet_lite0", [GOLDFISH], settings=Settings(prior="lite0-b3", **kw)))
            .identities()[0].key for name, kw in variants.PRESETS.items()}
    assert keys["paper"] == paper.identities()[0].key
    assert len(set(keys.values())) == len(keys)


@pytest.mark.parametrize("kw, words", [({"views": 99}, "views must be"), ({"bn_weight": -1.0}, "batch-norm weight"),
                                        ({"views": 2, "method": "maco"}, "DGN-AM variants")])
def test_bad_variant_settings_are_refused_in_one_line(kw, words):
    with pytest.raises(UserError, match=words):
        resolve(Request("efficientnet_lite0", [GOLDFISH], settings=Settings(**kw)))


def test_the_command_line_refuses_a_variant_for_the_pixel_method(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dgnam_engine", "visualize", "--model", "efficientnet_lite0",
                          "--unit", "1", "--method", "pixel", "--variant", "robust", "--out", str(tmp_path / "a.png")],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "DGN-AM variants" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "a.png").exists()
