"""The optimised paths against the plain fp32 eager loop: same preprocessing, same linear algebra, activations within
reduced-precision rounding, a real rise of a Lite0 class logit, and the quick preview mode."""
from __future__ import annotations

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn

from dgnam_engine import accel as A
from dgnam_engine import dgnam, priors, runner
from dgnam_engine.errors import UserError
from dgnam_engine.generators import Reshape, Scale
from dgnam_engine.targets import LayerSpec, Target, TargetSpec

CODE = (4096,)
LITE0_UNIT = 417  # "balloon"; any class works


@pytest.fixture(scope="module")
def tiny():
    """A small conv generator and a small conv+fc target: every layer kind the fast paths convert."""
    torch.manual_seed(0)
    gen = nn.Sequential(nn.Linear(CODE[0], 8 * 4 * 4), nn.LeakyReLU(0.3), Reshape(8, 4, 4),
                        nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Tanh(), Scale(100.0)).eval().requires_grad_(False)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1), act=nn.Tanh(), flat=nn.Flatten(),
                                      fc=nn.Linear(4 * 6 * 6, 5))).eval().requires_grad_(False)
    spec = TargetSpec(name="tiny", title="tiny", family="test", build=lambda: model, weights=None, input_size=6,
                      colour="rgb", mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3),
                      layers=lambda m: [LayerSpec("conv", "conv"), LayerSpec("fc", "fc")], output_layer="fc")
    upper = priors.read_bounds("fc6.txt", CODE)
    return gen, Target(spec, model, torch.device("cpu"), None), torch.zeros_like(upper), upper


def _run(setup, units, n, accel, layer="fc"):
    gen, target, lower, upper = setup
    return dgnam.run(gen, target, target.layer(layer), units, lower=lower, upper=upper, seeds=list(range(len(units))),
                     n_iters=n, lr_start=2.0, lr_end=1e-10, accel=accel)


def test_fast_linear_matches_linear_forward_and_backward():
    torch.manual_seed(1)
    lin = nn.Linear(64, 32).requires_grad_(False)
    fast = A.FastLinear(lin)
    x = torch.randn(3, 64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    g = torch.randn(3, 32)
    (d_ref,) = torch.autograd.grad(lin(x), x, g)
    (d_fast,) = torch.autograd.grad(fast(x2), x2, g)
    torch.testing.assert_close(fast(x2), lin(x))
    torch.testing.assert_close(d_fast, d_ref)


def test_int8_linear_is_within_one_per_cent_forward_and_backward():
    torch.manual_seed(2)
    lin = nn.Linear(512, 256).requires_grad_(False)
    q8 = A.Int8Linear(lin).to(torch.bfloat16)
    assert q8.q.dtype == torch.int8
    x = torch.randn(4, 512)
    g = torch.randn(4, 256)
    xr, xq = x.clone().requires_grad_(True), x.bfloat16().requires_grad_(True)
    ref = lin(xr)
    (d_ref,) = torch.autograd.grad(ref, xr, g)
    y = q8(xq)
    (d_q,) = torch.autograd.grad(y, xq, g.bfloat16())
    assert (y.float() - ref).norm() <= 0.01 * ref.norm()
    assert (d_q.float() - d_ref).norm() <= 0.01 * d_ref.norm()
    # sizes the int8 kernel gets wrong (1000 classes) stay on the bf16 path
    head = A.convert(nn.Sequential(nn.Linear(512, 1000)), A.Accel("bfloat16", int8_linear=True))
    assert isinstance(head[0], A.FastLinear)


def test_fast_target_preprocess_equals_the_target_preprocess(lite0):
    fast_gen, fast_tgt = A.prepare(nn.Identity(), lite0, A.Accel(channels_last=True))
    x = torch.randn(2, 3, 256, 256) * 60
    torch.testing.assert_close(fast_tgt.preprocess(x), lite0.preprocess(x))
    assert fast_tgt.model is not lite0.model and lite0.model.conv_stem.weight.dtype == torch.float32


def test_fp32_fast_path_follows_the_plain_trajectory(tiny):
    plain = _run(tiny, [0, 1, 3], 6, None)
    fast = _run(tiny, [0, 1, 3], 6, A.Accel(channels_last=True, fast_linear=True, check_every=4))
    torch.testing.assert_close(fast.activations, plain.activations, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.codes, plain.codes, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.images, plain.images, rtol=1e-4, atol=1e-4)
    assert torch.equal(fast.steps_done, plain.steps_done)


def test_thread_tuning_picks_a_count_restores_it_and_keeps_the_result(tiny):
    gen, target, lower, upper = tiny
    step = dgnam.make_step(gen, target, target.layer("fc"), torch.tensor([1]), None, lower.unsqueeze(0),
                           upper.unsqueeze(0), dgnam.DECAY)
    before = torch.get_num_threads()
    n = A.pick_threads(step, dgnam.initial_codes([0], CODE), torch.ones(1, dtype=torch.bool), 1.0)
    assert 1 <= n <= before and torch.get_num_threads() == before
    plain = _run(tiny, [1, 3], 4, None)
    tuned = _run(tiny, [1, 3], 4, A.Accel(tune_threads=True))
    torch.testing.assert_close(tuned.activations, plain.activations, rtol=1e-5, atol=1e-5)
    assert torch.get_num_threads() == before


def test_a_stopped_sample_stays_flat_when_checks_are_sparse(tiny):
    gen, target, lower, upper = tiny
    dead = Target(target.spec, nn.Sequential(OrderedDict(conv=target.model.conv, act=target.model.act,
                                                         flat=target.model.flat, fc=nn.Linear(144, 5))),
                  target.device, None)
    with torch.no_grad():
        dead.model.fc.weight.zero_()  # zero gradient for every unit: each sample stops at step 0
    dead.model.eval().requires_grad_(False)
    res = _run((gen, dead, lower, upper), [0, 2], 9, A.Accel(check_every=4))
    assert res.steps_done.tolist() == [0, 0]
    assert torch.equal(res.activations, res.activations[:1].expand_as(res.activations))


def test_default_cpu_path_keeps_lite0_activations_and_raises_a_class_logit(lite0, fc6_prior):
    acc = A.for_device("cpu")
    assert acc.dtype == ("bfloat16" if A.cpu_has_fast_bf16() else "float32") and acc.tune_threads
    layer = lite0.layer(None)
    codes = dgnam.initial_codes([0, 1], CODE).abs() * 3
    units = torch.tensor([LITE0_UNIT, LITE0_UNIT])
    with torch.no_grad():
        ref = lite0.unit_activations(fc6_prior.generator(codes), layer, units)
        g, t = A.prepare(fc6_prior.generator, lite0, acc)
        got = t.unit_activations(g(codes).float(), layer, units).float()
    # bf16 keeps 8 bits of mantissa: a few per cent of the logit's scale, never a different answer
    assert (got - ref).abs().max() <= 0.05 * ref.abs().max() + 0.05
    res = runner.visualize("efficientnet_lite0", [LITE0_UNIT], settings=runner.Settings(n_iters=6, accel="auto"),
                           target=lite0, prior=fc6_prior)[0]
    assert res.activation_final > res.activation_start + 1.0


def test_preview_settings_are_short_and_render(lite0, fc6_prior):
    s = runner.Settings(prior="fc6", seed=3)
    p = s.as_preview()
    assert p.n_iters == A.PREVIEW_ITERS and p.seed == 3 and p.accel == "auto"
    quick = runner.Settings(n_iters=6, accel="plain").as_preview()
    assert quick.n_iters == 6 and quick.accel == "auto"
    res = runner.visualize("efficientnet_lite0", [LITE0_UNIT], settings=quick, target=lite0, prior=fc6_prior)[0]
    assert res.n_iters == 6 and len(res.activations) == 6
    assert res.image.shape == (224, 224, 3) and res.image.std() > 1.0
    assert res.activation_final > res.activation_start


def test_unknown_accel_setting_is_a_user_error(lite0, fc6_prior):
    with pytest.raises(UserError, match="unknown accel setting"):
        runner.visualize("efficientnet_lite0", [1], settings=runner.Settings(accel="turbo"), target=lite0,
                         prior=fc6_prior)


def test_cpu_batch_size_is_fixed_and_capped():
    assert A.auto_batch_size(3, "cpu") == 3
    assert A.auto_batch_size(1000, "cpu") == A.CPU_BATCH


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_graph_path_matches_the_eager_path_on_gpu(tiny):
    gen, target, lower, upper = copy.deepcopy(tiny)
    dev = torch.device("cuda")
    gpu = (gen.to(dev), Target(target.spec, target.model.to(dev), dev, None), lower.to(dev), upper.to(dev))
    eager = _run(gpu, [0, 1, 3], 8, A.Accel(channels_last=True))
    graphed = _run(gpu, [0, 1, 3], 8, A.Accel(channels_last=True, cuda_graph=True, check_every=4))
    torch.testing.assert_close(graphed.activations, eager.activations, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(graphed.images, eager.images, rtol=1e-4, atol=1e-4)
