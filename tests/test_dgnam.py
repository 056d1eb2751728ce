"""The DGN-AM loop: the update rule of act_max.py checked by hand on a tiny network, and a real rise of a class
logit of the ImageNet-trained EfficientNet-Lite0 through the fc6 generator architecture."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from dgnam_engine import accel as A
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


STEPS_RUN = [0]  # samples the generator rendered in the current test / 2 samples: how many steps the loop computed


class CountingGenerator(nn.Module):
    """The tiny generator, counting the samples it renders in a global, in steps of the tests' batch of two (on
    a CPU each sample has its own pass; accel's converted copy counts into the same global)."""

    def __init__(self, gen: nn.Module):
        super().__init__()
        self.gen = gen

    def forward(self, h):
        STEPS_RUN[0] += h.shape[0] / 2
        return self.gen(h)


class OutOfMemoryAbove(nn.Module):
    """The tiny generator, raising the GPU's out-of-memory error for batches larger than `limit`."""

    def __init__(self, gen: nn.Module, limit: int):
        super().__init__()
        self.gen, self.limit = gen, limit

    def forward(self, h):
        if h.shape[0] > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {h.shape[0]} samples")
        return self.gen(h)


def _recorded(tiny, k: int, n: int, preview_every: int, accel: bool = True, stop_after=None):
    """Run with a callback that records, per step it sees: the step, its activations, its preview image (or
    None) and how many steps had been computed when it was handed over. `stop_after`: from the step after that
    one on, the callback answers False, as the worker's does once Stop was clicked."""
    gen, target, lower, upper = tiny
    seen = []

    def callback(info):
        if stop_after is not None and seen and seen[-1][0] >= stop_after:
            return False
        seen.append((info.step, info.activations, info.images, STEPS_RUN[0]))
        return True

    STEPS_RUN[0] = 0
    res = dgnam.run(CountingGenerator(gen), target, target.layer("fc"), [0, 1], lower=lower, upper=upper,
                    seeds=[0, 1], n_iters=n, lr_start=2.0, lr_end=1e-10, callback=callback,
                    preview_every=preview_every, accel=A.Accel(check_every=k) if accel else None)
    return res, seen


def test_progress_read_every_k_steps_matches_the_per_step_path(tiny):
    """The loop a CUDA graph replays, run eagerly: the callback gets every step, in chunks of k handed over
    after the k-th step, with the same activations and pictures as when the host reads every step."""
    n, k = 10, 4
    every, per_step = _recorded(tiny, 1, n, preview_every=1)
    res, chunked = _recorded(tiny, k, n, preview_every=1)
    assert [s[0] for s in chunked] == list(range(n))
    assert [s[3] for s in chunked] == [min(n, (s // k + 1) * k) for s in range(n)]  # 4,4,4,4,8,...,10,10
    assert [s[3] for s in per_step] == [s + 1 for s in range(n)]
    for a, b in zip(chunked, per_step):
        assert torch.equal(a[1], b[1])
    torch.testing.assert_close(res.activations, torch.stack([s[1] for s in chunked]))
    # previews: the latest preview step of each read (3, 7 and the last), the same picture as per step
    assert [s[0] for s in chunked if s[2] is not None] == [3, 7, 9]
    for s in (3, 7, 9):
        assert torch.equal(chunked[s][2], per_step[s][2])
    # a preview every k steps: the step at the start of each chunk, and the last
    _, sparse = _recorded(tiny, k, n, preview_every=k)
    assert [s[0] for s in sparse if s[2] is not None] == [0, 4, 9]
    # and the fp32 fast path is the reference path's arithmetic
    _, plain = _recorded(tiny, 1, n, preview_every=1, accel=False)
    for a, b in zip(chunked, plain):
        torch.testing.assert_close(a[1], b[1], rtol=1e-5, atol=1e-5)


def test_cancel_is_honoured_within_k_steps(tiny):
    n, k = 20, 4
    for stop_after in (1, 5, 8):
        with pytest.raises(RunCancelled):
            _recorded(tiny, k, n, preview_every=0, stop_after=stop_after)
        assert STEPS_RUN[0] <= stop_after + 1 + k  # the read after the request, at most k steps later
        assert STEPS_RUN[0] < n


def test_out_of_memory_halves_the_batch_and_keeps_every_result(tiny):
    gen, target, lower, upper = tiny
    units, seeds = [0, 1, 3, 4, 0], [0, 1, 2, 3, 4]

    def run(g, **kw):
        return dgnam.run(g, target, target.layer("fc"), units, lower=lower, upper=upper, seeds=seeds, n_iters=3,
                         lr_start=2.0, lr_end=1e-10, per_sample=False, **kw)  # batched, as on a GPU

    whole = run(gen)
    halved = run(OutOfMemoryAbove(gen, 2))
    assert whole.batch_size == 5 and halved.batch_size == 2
    torch.testing.assert_close(halved.activations, whole.activations, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(halved.codes, whole.codes, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(halved.images, whole.images, rtol=1e-4, atol=1e-4)
    assert torch.equal(halved.steps_done, whole.steps_done)
    # an explicit per-sample objective is split with the batch (before, every half got all five units)
    from dgnam_engine.objectives import UnitObjective

    explicit = UnitObjective(target.layer("fc"), torch.as_tensor(units))
    split = run(OutOfMemoryAbove(gen, 2), objective=explicit)
    assert split.batch_size == 2
    torch.testing.assert_close(split.activations, whole.activations, rtol=1e-4, atol=1e-4)
    fast = run(OutOfMemoryAbove(gen, 2), accel=A.Accel(check_every=2))
    assert fast.batch_size == 2 and fast.activations.shape == (3, 5)
    with pytest.raises(torch.OutOfMemoryError):  # a live run keeps its batch: its progress is one batch
        run(OutOfMemoryAbove(gen, 2), callback=lambda info: True)
    with pytest.raises(torch.OutOfMemoryError):
        run(OutOfMemoryAbove(gen, 0))


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
