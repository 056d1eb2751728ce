"""Models are shared by every run and page of a process: a layer is read through a truncation of the model
(truncate.py), never through a hook on it, so concurrent runs and a page's classify cannot meet another run's
hook. Checked on every registered target and on the real EfficientNet-Lite0 from two threads at once."""
from __future__ import annotations

import gc
import threading
import weakref

import pytest
import torch
from torch import nn

from dgnam_engine import accel as A
from dgnam_engine import dgnam, runner, truncate
from dgnam_engine import targets as T

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs")


def hooks_on(model: nn.Module) -> list[str]:
    """Every module of `model` with a hook registered, as 'name: dict'."""
    return [f"{name or '<root>'}: {d}" for name, m in model.named_modules() for d in HOOK_DICTS
            if getattr(m, d, None)]


def hooked_reference(model: nn.Module, module: str, x: torch.Tensor) -> torch.Tensor:
    """The layer's output the old way (a hook), on a private copy."""
    copy = truncate.private_copy(model)
    out = {}
    dict(copy.named_modules())[module].register_forward_hook(lambda _m, _i, o: out.setdefault("o", o))
    with torch.no_grad():
        copy(x)
    return out["o"]


@pytest.mark.parametrize("name", list(T.TARGETS) + ["timm/mobilenetv3_small_050"])
def test_every_target_reads_its_layers_without_a_hook(name):
    with A.cpu_threads(1):  # on a shared 2-core machine one thread is several times faster (docs/performance.md)
        _check_layers(name)


def _check_layers(name: str) -> None:
    target = T.load_target(name, "cpu", random_weights=True)
    x = torch.randn(1, 3, target.spec.input_size, target.spec.input_size)
    layers = list(target.layers.values())
    for info in (layers[0], layers[len(layers) // 2], layers[-1]):  # the first, a middle one, the output
        with torch.no_grad():
            got = target.forward_to(x, info)
        torch.testing.assert_close(got, hooked_reference(target.model, info.module, x), rtol=1e-5, atol=1e-5)
        reader = target.layer_model(info)
        # the registered targets run as truncations of their own modules; a timm model without a plan falls back
        # to a private copy that shares the model's weights
        assert isinstance(reader, truncate.Truncated if name in T.TARGETS else truncate.HookedCopy), info.name
        assert {p.data_ptr() for p in reader.parameters()} <= {p.data_ptr() for p in target.model.parameters()}
    assert hooks_on(target.model) == []


def test_a_plan_that_does_not_reproduce_the_model_is_not_used():
    class Twisted(nn.Module):  # named like a planned architecture, but its forward skips a child
        def __init__(self):
            super().__init__()
            self.features, self.avgpool = nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(2)
            self.classifier = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))

        def forward(self, x):
            return self.classifier(torch.flatten(self.features(x)[:, :, :2, :2], 1))

    Twisted.__name__ = "AlexNet"
    model = Twisted().eval()
    x = torch.randn(2, 3, 8, 8)
    reader = truncate.layer_model(model, "classifier.0", lambda: x)
    assert isinstance(reader, truncate.HookedCopy)
    torch.testing.assert_close(reader(x), hooked_reference(model, "classifier.0", x))
    assert hooks_on(model) == []


def test_no_hook_is_left_on_shared_models_after_concurrent_runs_and_a_classify(lite0, fc6_prior):
    """Two runs on different layers of the same shared Lite0 in two threads, the fast path and the reference,
    while a page-style classify runs in this thread: each gets its own answer, and afterwards no module of the
    shared model or generator carries a hook (the old per-run hook ended a concurrent classify with _Stop)."""
    rgb = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    expected = lite0.classify(rgb)
    jobs = {"logits": ("classifier", "auto"), "blocks.5": ("blocks.5", "plain")}
    together, errors = {}, []

    def run(key, layer, accel):
        try:
            together[key] = runner.visualize("efficientnet_lite0", [7], layer,
                                             runner.Settings(n_iters=3, accel=accel), target=lite0,
                                             prior=fc6_prior)[0]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"{key}: {exc!r}")

    threads = [threading.Thread(target=run, args=(k, *v)) for k, v in jobs.items()]
    for t in threads:
        t.start()
    classified = 0
    while any(t.is_alive() for t in threads) or classified == 0:
        torch.testing.assert_close(lite0.classify(rgb), expected)
        classified += 1
    for t in threads:
        t.join()
    assert errors == [] and classified >= 1
    # each run read its own layer: the first step's activation is that of the starting code
    with torch.no_grad():
        x0 = fc6_prior.generator(dgnam.initial_codes([0], fc6_prior.lower.shape))  # seed 0, the settings' default
    for key, (layer, accel) in jobs.items():
        info = lite0.layer(layer)
        with torch.no_grad():
            first = float(lite0.unit_activations(x0, info, torch.tensor([7]))[0])
        tol = 1e-4 if accel == "plain" else 0.05  # the fast path computes in bf16 where the CPU has it
        assert together[key].activation_start == pytest.approx(first, rel=tol, abs=tol), key
    assert hooks_on(lite0.model) == [] and hooks_on(fc6_prior.generator) == []
    assert not torch.nn.modules.module._global_forward_hooks
    # accel's private converted copies carry only the casts they were made with: the input cast on their root,
    # and a cast in and out on each layer kept in fp32
    for per in (A._converted.get(lite0.model, {}), A._converted.get(fc6_prior.generator, {})):
        for copy in per.values():
            casts = [f"{n}: {d}" for n in copy.low_precision_skipped for d in ("_forward_hooks", "_forward_pre_hooks")]
            assert sorted(hooks_on(copy)) == sorted(["<root>: _forward_pre_hooks"] + casts)
            assert len(copy._forward_pre_hooks) == 1
            mods = dict(copy.named_modules())
            assert all(len(mods[n]._forward_hooks) == len(mods[n]._forward_pre_hooks) == 1
                       for n in copy.low_precision_skipped)


def test_truncations_do_not_keep_a_discarded_model_alive():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(truncate.layer_model(model, "1", lambda: x)(x), torch.relu(model[0](x)))
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
