"""The DGN-AM loop: the update rule of act_max.py checked by hand on a tiny network, and a real rise of a class
logit of the ImageNet-trained EfficientNet-Lite0 through the fc6 generator architecture."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from dgnam_engine import dgnam, priors, runner
from dgnam_engine.errors import RunCancelled
from dgnam_engine.generators import Reshape, Scale
from dgnam_engine.targets import LayerSpec, Target, TargetSpec

CODE = (4096,)  # the fc6 code, with its real bounds
GEN_SIZE, INPUT = 12, 8  # the generator's image is centre-cropped (offset 2) to the target's input
MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
DEAD = 2  # a target unit with zero weights: its gradient is exactly zero


@pytest.fixture(scope="module")
def tiny():
    """A tiny generator (fc6-sized code -> 12x12 BGR mean-subtracted image) and a tiny RGB target."""
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(CODE[0], 3 * GEN_SIZE * GEN_SIZE), nn.Tanh(), Scale(100.0),
                        Reshape(3, GEN_SIZE, GEN_SIZE)).eval().requires_grad_(False)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1), act=nn.Tanh(), flat=nn.Flatten(),
                                      fc=nn.Linear(4 * INPUT * INPUT, 5)))
    with torch.no_grad():
        model.fc.weight[DEAD] = 0
    model.eval().requires_grad_(False)
    spec = TargetSpec(name="tiny", title="tiny", family="test", build=lambda: model, weights=None,
                      input_size=INPUT, colour="rgb", mean=MEAN, std=STD,
                      layers=lambda m: [LayerSpec("conv", "conv"), LayerSpec("fc", "fc")], output_layer="fc")
    target = Target(spec, model, torch.device("cpu"), None)
    upper = priors.read_bounds("fc6.txt", CODE)
    return gen, target, torch.zeros_like(upper), upper


def _model_input(x_gen: torch.Tensor) -> torch.Tensor:
    """The conversion written out independently: crop at offset 2, BGR->RGB, add the mean, /255, normalise."""
    c = x_gen[:, :, 2:2 + INPUT, 2:2 + INPUT]
    rgb = (c[:, [2, 1, 0]] + torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)) / 255.0
    return (rgb - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def _activation(tiny, h: torch.Tensor, unit: int, layer: str = "fc") -> torch.Tensor:
    gen, target, _, _ = tiny
    m = target.model
    x = _model_input(gen(h))
    if layer == "conv":
        return m.conv(x)[:, unit, INPUT // 2, INPUT // 2]
    return m(x)[:, unit]


def _hand_step(tiny, h: torch.Tensor, unit: int, lr: float) -> torch.Tensor:
    _, _, lower, upper = tiny
    h = h.clone().requires_grad_(True)
    (d,) = torch.autograd.grad(_activation(tiny, h, unit).sum(), h)
    step = lr * d / d.abs().mean(dim=1, keepdim=True)
    return torch.minimum(torch.maximum(h.detach() + step, lower), upper) * 0.99


def _h0(seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.RandomState(seed).normal(0, 1, CODE)).float().unsqueeze(0)


def _run(tiny, units, seeds, n, lr_start=2.0, lr_end=1e-10, layer="fc", **kw):
    gen, target, lower, upper = tiny
    return dgnam.run(gen, target, target.layer(layer), units, lower=lower, upper=upper, seeds=seeds,
                     n_iters=n, lr_start=lr_start, lr_end=lr_end, **kw)


def test_one_step_matches_the_rule_by_hand(tiny):
    h0 = _h0(3)
    expected = _hand_step(tiny, h0, 1, 20.0)
    upper = tiny[3]
    # the step is large enough that both bounds matter, so the clamp and its order are really checked
    assert (expected == 0).any() and torch.isclose(expected, 0.99 * upper).any()
    res = _run(tiny, [1], [3], 1, lr_start=20.0, init_codes=h0)
    torch.testing.assert_close(res.codes, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(res.activations[0], _activation(tiny, h0, 1).detach(), rtol=1e-5, atol=1e-5)


def test_schedule_and_steps_match_a_loop_by_hand(tiny):
    n, lr0, lr1 = 5, 3.0, 0.5
    assert [dgnam.lr_at(i, n, lr0, lr1) for i in range(n)] == pytest.approx([3.0, 2.5, 2.0, 1.5, 1.0])
    assert dgnam.lr_at(199, 200, 8.0, 1e-10) == pytest.approx(0.04)  # act_max.py's last step
    h, acts = _h0(5), []
    for i in range(n):
        acts.append(float(_activation(tiny, h, 0)))
        h = _hand_step(tiny, h, 0, lr0 + (lr1 - lr0) * i / n)
    res = _run(tiny, [0], [5], n, lr_start=lr0, lr_end=lr1)
    torch.testing.assert_close(res.codes, h, rtol=1e-3, atol=1e-3)
    assert res.activations[:, 0].tolist() == pytest.approx(acts, rel=1e-3, abs=1e-3)


def test_initial_code_is_numpy_normal_of_the_seed(tiny):
    for seed in (0, 7):
        ref = np.random.RandomState(seed).normal(0, 1, CODE)
        assert np.array_equal(dgnam.initial_codes([seed], CODE)[0].numpy(), ref.astype(np.float32))
    res = _run(tiny, [0, 0], [0, 7], 1)
    assert res.activations[0].tolist() == pytest.approx(
        [float(_activation(tiny, _h0(0), 0)), float(_activation(tiny, _h0(7), 0))], rel=1e-5)


def test_code_stays_inside_the_bounds_after_every_step(tiny):
    _, _, lower, upper = tiny
    h = dgnam.initial_codes([0, 1], CODE)
    assert (h < 0).any()  # the start is not clipped, the steps are
    for _ in range(6):
        res = _run(tiny, [0, 3], [0, 1], 1, lr_start=15.0, init_codes=h)
        assert bool((res.codes >= lower).all()) and bool((res.codes <= upper).all())
        assert bool((res.codes <= 0.99 * upper + 1e-4).all())  # the decay comes after the clamp
        assert not torch.equal(res.codes, h)
        h = res.codes


def test_batch_equals_units_one_by_one(tiny):
    units, seeds = [0, 1, 3], [0, 1, 2]
    for layer in ("fc", "conv"):
        batch = _run(tiny, units, seeds, 4, layer=layer)
        for j, (u, s) in enumerate(zip(units, seeds)):
            one = _run(tiny, [u], [s], 4, layer=layer)
            torch.testing.assert_close(batch.activations[:, j], one.activations[:, 0], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(batch.codes[j], one.codes[0], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(batch.images[j], one.images[0], rtol=1e-4, atol=1e-4)


def test_returned_image_is_from_the_last_forward_pass(tiny):
    gen = tiny[0]
    three = _run(tiny, [1], [4], 3, lr_start=2.0, lr_end=2.0)  # constant lr: the first two steps are the same
    two = _run(tiny, [1], [4], 2, lr_start=2.0, lr_end=2.0)

    def rgb(h):
        c = gen(h)[:, :, 2:2 + INPUT, 2:2 + INPUT]
        return ((c[:, [2, 1, 0]] + torch.tensor([123.0, 117.0, 104.0]).view(1, 3, 1, 1)) / 255.0).clamp(0, 1)

    assert three.images.shape == (1, 3, INPUT, INPUT)
    torch.testing.assert_close(three.images, rgb(two.codes), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(three.images, rgb(three.codes), atol=1e-3)  # not the image of the final code
    assert three.activations[-1, 0] == pytest.approx(float(_activation(tiny, two.codes, 1)), rel=1e-4)


def test_zero_gradient_stops_that_sample_only(tiny):
    seen = []
    res = _run(tiny, [0, DEAD], [0, 1], 4, callback=lambda info: seen.append(info.step))
    assert res.steps_done.tolist() == [4, 0]
    assert torch.equal(res.codes[1], _h0(1)[0])  # untouched: no step, no clamp, no decay
    assert len(set(res.activations[:, 1].tolist())) == 1
    assert len(set(res.activations[:, 0].tolist())) == 4 and seen == [0, 1, 2, 3]
    seen.clear()
    dead = _run(tiny, [DEAD], [1], 4, callback=lambda info: seen.append(info.step))
    assert seen == [0] and dead.steps_done.tolist() == [0]  # all stopped: the loop ends
    assert len(set(dead.activations[:, 0].tolist())) == 1


def test_callback_previews_and_cancel(tiny):
    shown = []
    _run(tiny, [0], [0], 5, preview_every=2,
         callback=lambda info: shown.append(info.step) if info.images is not None else None)
    assert shown == [0, 2, 4]
    with pytest.raises(RunCancelled):
        _run(tiny, [0], [0], 5, callback=lambda info: info.step < 1 and None)


def test_dgnam_raises_a_lite0_class_logit_through_the_fc6_generator(lite0, fc6_prior):
    """The real loader, the real fc6 architecture (random weights) and the ImageNet-trained Lite0."""
    unit = 967  # espresso
    settings = runner.Settings(n_iters=8, accel="plain")  # the fp32 reference; the CLI test runs the fast path
    res = runner.visualize("efficientnet_lite0", [unit], settings=settings, target=lite0, prior=fc6_prior)[0]
    # what random codes give: the optimised image must beat every one of them clearly
    with torch.no_grad():
        h = dgnam.initial_codes(range(10, 14), CODE).clamp_min(0)
        x = fc6_prior.generator(h)
        chance = lite0.unit_activations(x, lite0.layer(None), torch.full((4,), unit)).max().item()
    assert res.activation_final - res.activation_start > 1.0
    assert res.activation_final > chance + 0.75
    assert res.image.shape == (224, 224, 3) and res.image.dtype == np.uint8 and res.image.std() > 5
    assert res.label == "espresso" and res.prior == "fc6" and len(res.activations) == 8
