"""Every target builds, lists its layers, and has a conv unit that DGN-AM can drive; Lite0 is ImageNet-trained."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dgnam_engine import dgnam, targets as T
from dgnam_engine.errors import UserError, WeightsMissing
from dgnam_engine.generators import Reshape, Scale

ROOT = Path(__file__).resolve().parent.parent

# name -> (a conv layer to drive, {layer: units} that the architecture fixes)
CASES = {
    "caffenet": ("conv2", {"conv1": 96, "conv3": 384, "conv5": 256, "fc6": 4096, "fc7": 4096, "fc8": 1000}),
    "alexnet": ("conv2", {"conv1": 64, "conv2": 192, "conv5": 256, "fc6": 4096, "fc8": 1000}),
    "googlenet": ("conv3", {"conv1": 64, "conv3": 192, "inception3a": 256, "inception4c": 512, "inception5b": 1024,
                                  "fc": 1000}),
    "resnet50": ("layer1", {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048, "fc": 1000}),
    "efficientnet_lite0": ("blocks.2", {"stem": 32, "blocks.2": 40, "blocks.6": 320, "head": 1280,
                                        "pooled": 1280, "classifier": 1000}),
    "timm/resnet18": ("layer1", {"layer1": 64, "layer2": 128, "layer4": 512, "fc": 1000}),
}


@pytest.fixture(scope="module")
def small_generator():
    """A small random generator: 64-d code -> 32x32 BGR mean-subtracted image (the target resizes it)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 3 * 32 * 32), nn.Tanh(), Scale(100.0),
                         Reshape(3, 32, 32)).eval().requires_grad_(False)


def _target(name: str, lite0) -> T.Target:
    if name == "efficientnet_lite0":
        return lite0  # the real weights ship with pip
    return T.load_target(name, "cpu", random_weights=True)


@pytest.mark.parametrize("name", list(CASES))
def test_target_builds_lists_layers_and_drives_a_conv_unit(name, lite0, small_generator):
    layer_name, units = CASES[name]
    tgt = _target(name, lite0)
    assert (tgt.weights_path is None) == (name != "efficientnet_lite0")
    layers = tgt.layers
    for lay, n in units.items():
        assert layers[lay].units == n, (name, lay)
    assert tgt.layer(None).name == tgt.spec.output_layer and tgt.layer(None).kind == "fc"
    assert tgt.layer(None).units == 1000
    info = tgt.layer(layer_name)
    assert info.kind == "conv" and info.shape[0] == info.units
    lower, upper = torch.full((64,), -4.0), torch.full((64,), 4.0)
    h0 = dgnam.initial_codes([0], (64,))
    # block outputs of GoogLeNet and the ResNets are post-ReLU: drive a unit that is alive at the start
    with torch.no_grad():
        r, c = info.centre()
        unit = int(tgt.forward_to(tgt.preprocess(small_generator(h0)), info)[0, :, r, c].argmax())
    res = dgnam.run(small_generator, tgt, info, [unit], lower=lower, upper=upper, seeds=[0], n_iters=4,
                    lr_start=1.0, lr_end=0.5)
    acts = res.activations[:, 0]
    assert torch.isfinite(acts).all() and not torch.equal(res.codes, h0)
    assert res.images.shape == (1, 3, tgt.spec.input_size, tgt.spec.input_size)
    assert acts[-1] > acts[0] + 1e-3 * (1 + abs(float(acts[0]))), acts.tolist()


def test_lite0_is_imagenet_trained(lite0):
    from skimage import data

    from dgnam_engine.imagenet import class_names

    names = class_names()
    for img, label in ((data.chelsea(), "Egyptian cat"), (data.coffee(), "espresso")):
        rgb = torch.from_numpy(img).permute(2, 0, 1).float().unsqueeze(0) / 255.0
        probs = lite0.classify(rgb)[0]
        assert probs.shape == (1000,) and abs(float(probs.sum()) - 1) < 1e-4
        assert names[int(probs.argmax())] == label and float(probs.max()) > 0.5


def test_activations_are_raw_pre_relu_values(lite0):
    """Hooks read the layer's own output: negative values survive (no in-place activation rewrote them)."""
    from dgnam_engine import truncate

    x = torch.randn(2, 3, 224, 224) * 60
    for tgt, layer in ((lite0, "blocks.2"), (T.load_target("alexnet", random_weights=True), "conv1")):
        info = tgt.layer(layer)
        a = tgt.unit_activations(x, info, torch.arange(2) + 3)
        # the reference: the layer module's output recorded by a hook in a full pass of the whole network (on a
        # private copy), independent of the truncated model unit_activations runs
        whole = truncate.private_copy(tgt.model)
        seen = {}
        dict(whole.named_modules())[info.module].register_forward_hook(lambda m, i, out: seen.setdefault("y", out))
        with torch.no_grad():
            whole(tgt.preprocess(x))
        full = seen["y"]
        r, c = info.centre()
        torch.testing.assert_close(a, full[torch.arange(2), torch.arange(2) + 3, r, c], rtol=1e-5, atol=1e-4)
        assert float(full.min()) < 0


def test_bad_model_layer_unit_and_position_are_user_errors(lite0):
    with pytest.raises(UserError, match="unknown model 'vgg99'"):
        T.get_spec("vgg99")
    with pytest.raises(UserError, match="timm has no model"):
        T.get_spec("timm/not_a_model_at_all")
    with pytest.raises(UserError, match="no layer 'fc9'.*classifier"):
        lite0.layer("fc9")
    with pytest.raises(UserError, match="unit 1000 is out of range.*0-999"):
        lite0.check_unit(lite0.layer(None), 1000)
    with pytest.raises(UserError, match="out of range"):
        lite0.check_unit(lite0.layer(None), -1)
    with pytest.raises(UserError, match="outside the 28x28 map"):
        lite0.check_unit(lite0.layer("blocks.2"), 3, (5, 28))
    with pytest.raises(UserError, match="no GPU|unknown device"):
        T.resolve_device("cuda" if not torch.cuda.is_available() else "tpu")


def _same_weights(a: nn.Module, b: dict) -> bool:
    sd = a.state_dict()
    return all(torch.equal(sd[k], v) for k, v in b.items() if k in sd)


def test_target_weights_from_explicit_file_and_torch_cache(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = T.get_spec("timm/resnet18")
    assert not T.weights_available(spec)
    with pytest.raises(WeightsMissing, match="fetch timm/resnet18"):
        T.load_target("timm/resnet18")
    torch.manual_seed(3)
    sd = spec.build().state_dict()
    save_file(sd, str(tmp_path / "r18.safetensors"))
    tgt = T.load_target("timm/resnet18", weights=str(tmp_path / "r18.safetensors"))
    assert tgt.weights_path == str(tmp_path / "r18.safetensors") and _same_weights(tgt.model, sd)
    # the torchvision GoogLeNet file holds the auxiliary classifiers too; they are dropped on loading
    import torchvision.models as tvm

    torch.manual_seed(4)
    gsd = tvm.googlenet(weights=None, aux_logits=True, init_weights=False).state_dict()
    assert any(k.startswith("aux1.") for k in gsd)
    ckpt = tmp_path / "torch" / "hub" / "checkpoints" / T.get_spec("googlenet").weights.filename
    ckpt.parent.mkdir(parents=True)
    torch.save(gsd, ckpt)
    assert T.weights_available(T.get_spec("googlenet"))
    g = T.load_target("googlenet")
    assert g.weights_path == str(ckpt) and _same_weights(g.model, gsd)
    assert not g.model.training and not any(p.requires_grad for p in g.model.parameters())


def test_images_reach_the_model_in_its_own_convention(lite0):
    """Generator convention (BGR, mean-subtracted, 0-255) -> Lite0's RGB, (x-0.5)/0.5; a real photo survives the
    round trip through rgb_to_gen and preprocess exactly."""
    from skimage import data

    rgb = torch.from_numpy(np.ascontiguousarray(data.chelsea()[:224, :224])).permute(2, 0, 1)[None].float() / 255
    x = lite0.preprocess(lite0.rgb_to_gen(rgb))
    torch.testing.assert_close(x, (rgb - 0.5) / 0.5, rtol=1e-5, atol=1e-5)
    caffe = T.load_target("caffenet", random_weights=True)
    g = torch.randn(1, 3, 256, 256)
    assert torch.equal(caffe.preprocess(g), g[..., 14:241, 14:241])  # act_max.py's offset for 227


def test_weight_file_names():
    import torchvision.models as tvm

    assert T.TV_URLS == {"alexnet": tvm.AlexNet_Weights.IMAGENET1K_V1.url,
                         "googlenet": tvm.GoogLeNet_Weights.IMAGENET1K_V1.url}
    assert T.get_spec("alexnet").weights.filename == "alexnet-owt-7be5be79.pth"
    # one file for the registry entry and the same model asked for as timm/<name>
    assert T.get_spec("timm/resnet50").weights.filename == T.get_spec("resnet50").weights.filename
    assert T.get_spec("timm/resnet18").weights.hf_repo == "timm/resnet18.a1_in1k"


def test_the_papers_setup_is_the_default_when_its_files_are_in_the_caches(tmp_path, monkeypatch, fc6_file):
    """CaffeNet (in the Hugging Face cache, published key form) and the fc6 prior (in torch hub's checkpoints, as
    other tools cache it): a run that names no model uses CaffeNet fc8 with fc6, on the command line and on the
    dashboard's first screen. Without them the offline default stays Lite0 with the demo prior."""
    import json
    import os
    import subprocess
    import sys

    import huggingface_hub.constants as hfc

    from app import catalog
    from dgnam_engine import priors as P
    from dgnam_engine.caffenet import caffenet
    from test_weights import _converter_keys, _hf_cache

    torch_home, hf_home = tmp_path / "torch", tmp_path / "hf"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(hf_home / "hub"))
    assert T.default_target() == "efficientnet_lite0" and catalog.DEFAULT_MODEL == "efficientnet_lite0"
    assert P.default_prior_name() == "lite0-b3"

    torch.manual_seed(6)
    enc = tmp_path / "caffenet.pt"
    torch.save(_converter_keys({k: v.half() for k, v in caffenet().state_dict().items()}, ("fc6", "fc7", "fc8")), enc)
    _hf_cache(hf_home / "hub", T.HF_DEEPSIM, "caffenet.pt", enc)
    assert T.default_target() == "efficientnet_lite0"  # CaffeNet alone is not the paper's setup: no fc6 prior
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    os.link(fc6_file, torch_home / "hub" / "checkpoints" / "upconvGAN_fc6.pt")
    assert T.default_target() == "caffenet" and catalog.DEFAULT_MODEL == "caffenet"
    assert catalog.default_prior() == "fc6" and catalog.output_layer(catalog.DEFAULT_MODEL) == "fc8"
    assert catalog.DEFAULT_UNIT < T.load_target("caffenet", random_weights=True).layer("fc8").units

    out = tmp_path / "x.png"
    p = subprocess.run([sys.executable, "-m", "dgnam_engine", "visualize", "--unit", str(catalog.DEFAULT_UNIT),
                        "--iters", "2", "--out", str(out), "--json", "--quiet"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr[-2000:]
    run = json.loads(p.stdout.strip().splitlines()[-1])
    assert (run["model"], run["layer"], run["prior"]) == ("caffenet", "fc8", "fc6") and out.is_file()
    assert run["weights"].endswith("caffenet.pt") and "models--binxu--DeePSim" in run["weights"]
