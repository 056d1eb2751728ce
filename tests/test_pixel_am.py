"""The pixel-space baseline: each (unit, seed) pair gets the same picture in a batch as alone (its jitter comes
from its own seed), and it raises the unit."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dgnam_engine import pixel_am
from dgnam_engine.targets import LayerSpec, Target, TargetSpec


def _tiny_target() -> Target:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1), act=nn.Tanh(), flat=nn.Flatten(),
                                      fc=nn.Linear(4 * 16 * 16, 5))).eval().requires_grad_(False)
    spec = TargetSpec(name="tiny", title="tiny", family="test", build=lambda: model, weights=None, input_size=16,
                      colour="rgb", layers=lambda m: [LayerSpec("fc", "fc")], output_layer="fc")
    return Target(spec, model, torch.device("cpu"), None)


def test_pixel_baseline_batch_equals_one_by_one():
    t = _tiny_target()
    layer = t.layer("fc")
    batch = pixel_am.run(t, layer, [1, 3, 1], seeds=[5, 6, 7], n_iters=12)
    for j, (u, s) in enumerate([(1, 5), (3, 6), (1, 7)]):
        alone = pixel_am.run(t, layer, [u], seeds=[s], n_iters=12)
        assert torch.allclose(batch.images[j], alone.images[0], atol=1e-5), (u, s)
        assert torch.allclose(batch.activations[:, j], alone.activations[:, 0], atol=1e-4)
    # different seeds of the same unit really differ (the jitter and the start are per sample)
    assert not torch.allclose(batch.images[0], batch.images[2], atol=1e-3)
    assert float(batch.activations[-1, 0]) > float(batch.activations[0, 0])


def test_the_methods_without_a_generator_take_the_fast_path_by_default_and_the_plain_one_on_request(lite0):
    """Pixel and MACO pictures are keyed by the precision their target really computed in, like DGN-AM's, and both
    raise a real Lite0 class on the default (fast) path."""
    from dgnam_engine import accel
    from dgnam_engine.request import Request, Settings, resolve
    from dgnam_engine.runner import visualize

    fast = accel.describe(accel.for_device("cpu"), "cpu")
    for method in ("pixel", "maco"):
        auto = resolve(Request("efficientnet_lite0", [309], settings=Settings(method=method), device="cpu"))
        plain = resolve(Request("efficientnet_lite0", [309], settings=Settings(method=method, accel="plain"),
                                device="cpu"))
        assert (auto.precision, plain.precision) == (fast, "cpu float32 plain")
        assert auto.identities()[0].key != plain.identities()[0].key
        (r,) = visualize("efficientnet_lite0", [309], settings=Settings(method=method, n_iters=8), target=lite0)
        assert r.activation_final > r.activation_start + 1.0, method
