"""The optimised paths against the plain fp32 eager loop: same preprocessing, same linear algebra, activations within
reduced-precision rounding, a real rise of a Lite0 class logit, and the quick preview mode."""
from __future__ import annotations

import copy
import json
import logging
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


@pytest.mark.skipif(not A.cpu_has_fast_bf16(), reason="the CPU default packs bf16 layers only where bf16 is native")
def test_packed_linear_computes_what_the_bf16_linear_computes_both_ways():
    torch.manual_seed(1)
    lin = nn.Linear(256, 96).requires_grad_(False).to(torch.bfloat16)
    conv = A.convert(nn.Sequential(nn.Linear(256, 96)).requires_grad_(False), A.for_device("cpu"))
    assert isinstance(conv[0], A.PackedLinear)  # the CPU default packs its linear layers
    packed = A.PackedLinear(lin.weight, lin.bias)
    x = torch.randn(1, 256, dtype=torch.bfloat16, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    g = torch.randn(1, 96, dtype=torch.bfloat16)
    (d_ref,) = torch.autograd.grad(lin(x), x, g)
    (d_packed,) = torch.autograd.grad(packed(x2), x2, g)
    torch.testing.assert_close(packed(x2).float(), lin(x).float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(d_packed.float(), d_ref.float(), rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(not A.cpu_has_fast_bf16(), reason="the CPU default packs bf16 layers only where bf16 is native")
@pytest.mark.parametrize("layer", [nn.Conv2d(16, 24, 3, 2, 1), nn.Conv2d(8, 8, 5, 1, 2),
                                   nn.ConvTranspose2d(24, 16, 4, 2, 1), nn.ConvTranspose2d(8, 4, 3, 2, 1, 1)],
                         ids=["conv stride 2", "conv 5x5", "deconv 4x4 stride 2", "deconv output padding"])
def test_packed_convolutions_compute_what_the_bf16_layer_computes_both_ways(layer):
    from dgnam_engine.truncate import private_copy

    torch.manual_seed(2)
    conv = A.convert(nn.Sequential(layer).requires_grad_(False), A.for_device("cpu"))
    assert isinstance(conv[0], A.PackedConv)  # the CPU default packs its convolutions
    ref = copy.deepcopy(layer).to(torch.bfloat16).to(memory_format=torch.channels_last)
    x = torch.randn(1, layer.in_channels, 9, 9).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    y_ref, y = ref(x), conv(x2)
    g = torch.randn_like(y_ref)
    (d_ref,) = torch.autograd.grad(y_ref, x, g)
    (d,) = torch.autograd.grad(y, x2, g)
    assert y.shape == y_ref.shape and d.shape == x.shape
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(d.float(), d_ref.float(), rtol=1e-2, atol=1e-2)
    # a structural copy (as hidden units are read) shares the packs and works
    torch.testing.assert_close(private_copy(conv)(x2).float(), y.float())


def test_strided_depthwise_convolutions_stay_fp32_on_the_cpu(lite0):
    """Their bf16 input gradient is many times slower than fp32's on a CPU: the fast path keeps them fp32, and
    only them (by a fixed rule, so a run's precision never depends on a timing)."""
    model = A.convert_target(lite0, A.Accel(dtype="bfloat16", channels_last=True))
    mods = dict(lite0.model.named_modules())
    strided_dw = {n for n, m in mods.items() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1
                  and max(m.stride) > 1}
    assert strided_dw and strided_dw <= set(model.low_precision_skipped)
    assert not any(isinstance(mods[n], nn.Conv2d) and max(mods[n].stride) == 1
                   for n in model.low_precision_skipped)


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
    assert acc.dtype == ("bfloat16" if A.cpu_has_fast_bf16() else "float32")
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


class FakeGpuMemory:
    """What a run at batch k allocates on a GPU (a fixed part plus a part per sample), and the out-of-memory error
    the allocator raises when that exceeds what it can get: auto_batch_size's rule, without a GPU."""

    def __init__(self, fixed: int, per: int, fails_above: int):
        self.fixed, self.per, self.fails_above = fixed, per, fails_above
        self.runs: list[int] = []
        self.released = 0

    def run(self, k: int) -> int:
        self.runs.append(k)
        if k > self.fails_above:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {k * self.per} bytes")
        return self.fixed + self.per * k

    def release(self) -> None:
        self.released += 1


def _fit(mem: FakeGpuMemory, n_units: int = 1000, free: int = 100_000) -> int:
    return A.fit_batch(n_units, mem.run, lambda: free, mem.run, mem.release, fraction=0.8, cap=1024)


def test_batch_size_fits_the_measured_memory_and_backs_off_on_out_of_memory(caplog):
    roomy = FakeGpuMemory(fixed=8_000, per=1_000, fails_above=10_000)
    assert _fit(roomy) == 72  # (0.8 * 100000 - 8000) // 1000
    assert roomy.runs == [1, 4, 16, 72] and roomy.released == 0  # warm-up, two measures, one confirming run
    assert _fit(roomy, n_units=30) == 30 and _fit(FakeGpuMemory(0, 1, 10**9), 5000, 10**9) == 1024  # cap
    # the measures said 72, but the real run's allocation does not fit: halve until it does
    with caplog.at_level(logging.WARNING, logger="dgnam_engine.accel"):
        tight = FakeGpuMemory(fixed=8_000, per=1_000, fails_above=40)
        assert _fit(tight) == 36 and tight.runs[-2:] == [72, 36] and tight.released == 1
    assert "out of memory at batch 72" in caplog.text
    # a measuring run that does not fit: a smaller batch, still confirmed by a run
    assert _fit(FakeGpuMemory(fixed=8_000, per=1_000, fails_above=10)) == 4
    assert _fit(FakeGpuMemory(fixed=8_000, per=1_000, fails_above=2)) == 2
    with pytest.raises(torch.OutOfMemoryError, match="not even one unit"):
        _fit(FakeGpuMemory(fixed=8_000, per=1_000, fails_above=0))


def test_precompute_summary_records_the_batch_size(tmp_path, fc6_file, lite0, capsys):
    """(lite0: the runner's cached model, so the command does not load it again)"""
    from dgnam_engine import cli, precompute  # noqa: F401 - precompute registers its subcommand with the CLI

    args = ["precompute", "--model", "efficientnet_lite0", "--units", "3,4", "--plain", "--prior", "fc6",
            "--prior-file", str(fc6_file), "--iters", "1", "--device", "cpu", "--store", str(tmp_path), "--json",
            "--quiet"]
    assert cli.main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["rendered"] == 2 and summary["batch_size"] == 2  # auto on a CPU: both in one batch
    assert cli.main(args + ["--batch", "1"]) == 0  # a given size is recorded as given
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["batch_size"] == 1


def test_a_failed_graph_capture_is_an_error_unless_eager_fallback_is_allowed(monkeypatch, caplog):
    cause = RuntimeError("operation not permitted when stream is capturing\nCUDA kernel errors ...")
    monkeypatch.delenv(A.ALLOW_EAGER_ENV, raising=False)
    with pytest.raises(A.GraphCaptureError, match="operation not permitted when stream is capturing") as err:
        A.on_capture_failure(cause)
    assert A.ALLOW_EAGER_ENV in str(err.value) and "CUDA kernel errors" not in str(err.value)
    monkeypatch.setenv(A.ALLOW_EAGER_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="dgnam_engine.accel"):
        A.on_capture_failure(cause)
    assert "running eagerly" in caplog.text and "operation not permitted" in caplog.text


def test_cudnn_autotuning_is_on_only_inside_a_fast_gpu_run(tiny):
    before = torch.backends.cudnn.benchmark
    try:
        torch.backends.cudnn.benchmark = False
        with A.fast_kernels(torch.device("cuda"), A.Accel()):
            assert torch.backends.cudnn.benchmark is True
        assert torch.backends.cudnn.benchmark is False
        with A.fast_kernels(torch.device("cuda"), None):  # the reference path keeps deterministic choices
            assert torch.backends.cudnn.benchmark is False
        with pytest.raises(KeyError):
            with A.fast_kernels(torch.device("cuda"), A.Accel()):
                raise KeyError("a failed run restores the flag too")
        assert torch.backends.cudnn.benchmark is False
        _run(tiny, [0], 2, A.Accel(channels_last=True))  # preparing and running leave the process setting alone
        assert torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = before


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")


@needs_gpu
def test_cuda_graph_path_matches_the_eager_path_on_gpu(tiny):
    gen, target, lower, upper = copy.deepcopy(tiny)
    dev = torch.device("cuda")
    gpu = (gen.to(dev), Target(target.spec, target.model.to(dev), dev, None), lower.to(dev), upper.to(dev))
    eager = _run(gpu, [0, 1, 3], 8, A.Accel(channels_last=True))
    graphed = _run(gpu, [0, 1, 3], 8, A.Accel(channels_last=True, cuda_graph=True, check_every=4))
    assert graphed.graph_captured and not eager.graph_captured
    torch.testing.assert_close(graphed.activations, eager.activations, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(graphed.images, eager.images, rtol=1e-4, atol=1e-4)
    # with progress: the graph is replayed, the callback sees every step, with the eager path's numbers
    seen = []
    live = dgnam.run(gpu[0], gpu[1], gpu[1].layer("fc"), [0, 1, 3], lower=gpu[2], upper=gpu[3], seeds=[0, 1, 2],
                     n_iters=8, lr_start=2.0, lr_end=1e-10, preview_every=2,
                     accel=A.Accel(channels_last=True, cuda_graph=True, check_every=4),
                     callback=lambda info: seen.append((info.step, info.activations, info.images is not None)))
    assert live.graph_captured and [s[0] for s in seen] == list(range(8))
    assert [s[0] for s in seen if s[2]] == [2, 7]
    torch.testing.assert_close(torch.stack([s[1] for s in seen]), eager.activations, rtol=1e-4, atol=1e-4)


BF16_TOLERANCE = 0.05  # of the unit's activation scale (bf16 keeps 8 bits of mantissa; CPU measures 1-3%)


@needs_gpu
def test_default_gpu_path_is_bf16_graphed_and_within_tolerance_of_fp32(fc6_file):
    """The GPU default (bf16, channels-last, CUDA graph, progress every 25 steps) against the fp32 reference on
    the real EfficientNet-Lite0 and the fc6 prior architecture: the same codes give the same activation within
    BF16_TOLERANCE, a live run captures its graph and raises the logit like the fp32 run."""
    lite0 = runner.get_target("efficientnet_lite0", "cuda")
    prior = runner.get_prior("fc6", str(fc6_file), "cuda")
    acc = A.for_device("cuda")
    assert acc.dtype == "bfloat16" and acc.cuda_graph and acc.channels_last
    layer = lite0.layer(None)
    codes = (dgnam.initial_codes([0, 1, 2, 3], CODE).abs() * 3).cuda()
    units = torch.full((4,), LITE0_UNIT, device="cuda")
    with torch.no_grad():
        ref = lite0.unit_activations(prior.generator(codes), layer, units)
        g, t = A.prepare(prior.generator, lite0, acc)
        got = t.unit_activations(g(codes).float(), layer, units).float()
    assert (got - ref).abs().max() <= BF16_TOLERANCE * ref.abs().max()
    steps = []
    fast = runner.visualize("efficientnet_lite0", [LITE0_UNIT], settings=runner.Settings(n_iters=30),
                            target=lite0, prior=prior, callback=lambda info: steps.append(info.step))[0]
    plain = runner.visualize("efficientnet_lite0", [LITE0_UNIT], settings=runner.Settings(n_iters=30, accel="plain"),
                             target=lite0, prior=prior)[0]
    assert steps == list(range(30))
    rise_fast = fast.activation_final - fast.activation_start
    rise_plain = plain.activation_final - plain.activation_start
    assert rise_plain > 1.0 and 0.5 * rise_plain <= rise_fast <= 2.0 * rise_plain
    assert abs(fast.activation_start - plain.activation_start) <= BF16_TOLERANCE * abs(plain.activation_start) + 0.1
    res = dgnam.run(prior.generator, lite0, layer, [LITE0_UNIT], lower=prior.lower, upper=prior.upper, seeds=[0],
                    n_iters=5, lr_start=2.0, lr_end=1e-10, accel=acc, callback=lambda info: True)
    assert res.graph_captured
