"""Every registered target x every kind of prior x both speed paths renders a picture with finite activations,
through runner.visualize and through the command line. The default fast path computes what the plain path does
(within bf16 rounding), including CaffeNet, whose LocalResponseNorm has no bf16 CPU kernel."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dgnam_engine import generators, runner, targets as T

ROOT = Path(__file__).resolve().parent.parent
STEPS = 2
# The three kinds of prior: an original DeePSiM architecture (conv3, the smallest, with random weights, loaded
# from a file in the published format), a demo prior that ships in assets/, and the pixel-space baseline.
PRIORS = ("original-conv3", "demo-lite0-b3", "pixel")
ACCELS = ("plain", "auto")


@pytest.fixture(scope="module")
def conv3_file(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("matrix") / "upconvGAN_conv3.pt"
    torch.save(generators.upconv_conv34().state_dict(), path)
    return path


def _settings(prior: str, accel: str) -> runner.Settings:
    if prior == "pixel":
        return runner.Settings(method="pixel", n_iters=STEPS, accel=accel)
    return runner.Settings(prior={"original-conv3": "conv3", "demo-lite0-b3": "lite0-b3"}[prior], n_iters=STEPS,
                           accel=accel)


# The scene networks (issue 19) repeat the CaffeNet and AlexNet architectures above; the one new architecture,
# torchvision's ResNet, stands for them all (tests/test_scenes.py runs each of them once).
MODELS = [n for n, s in T.TARGETS.items() if s.dataset == "ImageNet"] + ["resnet18_places365"]


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("model", MODELS)
def test_visualize(model, prior, conv3_file):
    """Both paths in one test, so the comparison runs whatever else runs (runner caches the loaded target and
    prior, so each is loaded once for both)."""
    first = {}
    for accel in ACCELS:
        s = _settings(prior, accel)
        (r,) = runner.visualize(model, [3], None, s, random_weights=True,
                                prior_file=str(conv3_file) if prior == "original-conv3" else None)
        size = T.TARGETS[model].input_size
        assert r.image.shape == (size, size, 3) and r.image.dtype == np.uint8
        assert r.image.std() > 0  # a picture, not a blank
        assert len(r.activations) == STEPS and np.isfinite(r.activations).all()
        assert r.prior == ("pixel" if prior == "pixel" else s.prior) and r.layer == T.TARGETS[model].output_layer
        first[accel] = r.activations[0]
    # both paths start from the same code: the first activation is the same computation, within bf16 rounding
    plain, fast = first["plain"], first["auto"]
    assert abs(fast - plain) <= 0.05 * max(abs(plain), 1e-3) + 1e-3, (model, prior, plain, fast)


# The command line starts a process per call (seconds each) and always takes the default path: CaffeNet, the
# paper's own target, with both kinds of generator prior (the pixel baseline has no fast path of its own).
@pytest.mark.parametrize("prior", PRIORS[:2])
def test_cli_caffenet_default_path(prior, conv3_file, tmp_path):
    from PIL import Image

    out = tmp_path / "x.png"
    cmd = [sys.executable, "-m", "dgnam_engine", "visualize", "--model", "caffenet", "--random-weights", "--unit", "3",
           "--iters", str(STEPS), "--out", str(out), "--json", "--quiet"]
    if prior == "original-conv3":
        cmd += ["--prior", "conv3", "--prior-file", str(conv3_file)]
    else:
        cmd += ["--prior", "lite0-b3"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert np.isfinite(summary["activations"]).all() and len(summary["activations"]) == STEPS
    with Image.open(out) as im:
        assert im.size == (227, 227) and np.asarray(im.convert("RGB")).std() > 0


# ----- how the fast path picks each layer's precision -----

def test_a_layer_without_a_low_precision_kernel_stays_fp32():
    """CaffeNet's LocalResponseNorm has no bf16 CPU kernel: those layers stay fp32, the rest run in bf16, and the
    output is the fp32 network's within bf16 rounding."""
    from dgnam_engine import accel as A

    tgt = runner.get_target("caffenet", "cpu", random_weights=True)
    m = A.convert(tgt.model, A.Accel("bfloat16", channels_last=True, fast_linear=True))
    lrn_runs = A.layer_runs_in(torch.nn.LocalResponseNorm(5), torch.bfloat16, torch.device("cpu"), True)
    assert m.low_precision_skipped == (() if lrn_runs else ("norm1", "norm2"))
    assert m.conv1.weight.dtype == torch.bfloat16 and m.norm1.training is False
    x = torch.randn(2, 3, 227, 227) * 50
    ref, got = tgt.model(x), m(x).float()
    assert (got - ref).norm() <= 0.05 * ref.norm()


class _FunctionalLRN(torch.nn.Module):
    """A block that calls an op with no bf16 CPU kernel itself, so no leaf layer reveals it."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(torch.nn.functional.local_response_norm(self.conv(x), 3).flatten(1))


def test_a_model_the_layer_probe_cannot_vouch_for_falls_back_to_fp32_loudly():
    from dgnam_engine import accel as A

    model = _FunctionalLRN().eval().requires_grad_(False)
    spec = T.TargetSpec(name="functional", title="t", family="test", build=lambda: model, weights=None,
                        input_size=8, colour="caffe", layers=lambda m: [T.LayerSpec("fc", "fc")], output_layer="fc")
    tgt = T.Target(spec, model, torch.device("cpu"), None)
    x = torch.randn(1, 3, 8, 8)
    try:
        model.bfloat16()(x.bfloat16())
        pytest.skip("this CPU has a bf16 LocalResponseNorm kernel")
    except (RuntimeError, NotImplementedError):
        model.float()
    with pytest.warns(UserWarning, match="functional cannot run in bfloat16 on cpu .*it runs in float32"):
        m = A.convert_target(tgt, A.Accel("bfloat16"))
    torch.testing.assert_close(m(x), model(x))
