"""What can be picked: models with their weights present, their layers and units, priors, and readable names."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import streamlit as st

from dgnam_engine import catalog as C
from dgnam_engine import priors as P
from dgnam_engine import runner
from dgnam_engine import targets as T
from dgnam_engine.imagenet import class_names as imagenet_classes

from . import state
from .names import LayerNames, find_in
from .plain import plain
from .terms import TERMS  # noqa: F401 (pages read catalog.TERMS)

DEFAULT_UNIT = 309  # "bee": an ImageNet class (the same index in every target) that reads well with either default
DEPTHS = C.DEPTHS
PIXEL = "pixel"
MACO = "maco"  # no generator: the phase of a natural spectrum (Fel et al. 2023), today's best pixel-space method
NO_GENERATOR = (PIXEL, MACO)  # the choices that run without a prior, by the engine's method of the same name


def method_of(choice: str) -> str:
    """The engine method a prior choice runs: "pixel" or "maco" for those, else "dgnam" with that prior."""
    return choice if choice in NO_GENERATOR else "dgnam"


def default_model() -> str:
    """The model of the first screen: the paper's CaffeNet when it and the fc6 prior are present, else Lite0."""
    return T.default_target()


def __getattr__(name: str):
    # DEFAULT_MODEL is read when a session starts, after weights may have been fetched: computed on each read.
    if name == "DEFAULT_MODEL":
        return default_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fetch_command(name: str) -> str:
    """A command that works as printed in a terminal opened in the project folder: the project's own environment
    (made by run.sh / scripts/setup.sh), not whatever `python` the terminal finds first."""
    return f".venv/bin/python -m dgnam_engine fetch {name}"


def model_names() -> list[str]:
    return [e.name for e in C.networks()]


def model_available(name: str) -> bool:
    return C.network(name).available


def available_models() -> list[str]:
    return [e.name for e in C.networks() if e.available]


def model_short(name: str) -> str:
    """'EfficientNet-Lite0' from 'EfficientNet-Lite0 (ships with pip, no download)'."""
    return T.get_spec(name).title.split(" (")[0]


@st.cache_resource(show_spinner="Loading the model…")
def _target(model: str, device: str) -> T.Target:
    return runner.get_target(model, device)


def target(model: str) -> T.Target:
    """The loaded model (shared with the worker's runs through runner's cache)."""
    return _target(model, state.device())


def layers(model: str) -> dict[str, T.LayerInfo]:
    return target(model).layers


def output_layer(model: str) -> str:
    return T.get_spec(model).output_layer


def class_names(model: Optional[str] = None) -> tuple[str, ...]:
    """The output classes of `model` (ImageNet's when None: the pages that compare ImageNet networks)."""
    return T.get_spec(model).classes() if model else imagenet_classes()


def imagenet_classifier(model: str) -> bool:
    """Whether the network's output layer is the 1000 ImageNet classes (what Compare models compares)."""
    return class_names(model) == imagenet_classes()


def dataset(model: str) -> str:
    return T.get_spec(model).dataset


def default_unit(model: str) -> int:
    """bee for ImageNet networks; the first class of any other (a scene network's has no bee)."""
    return DEFAULT_UNIT if len(class_names(model)) == 1000 else 0


def is_class_layer(model: str, layer: str) -> bool:
    info = layers(model)[layer]
    return layer == output_layer(model) and info.units == len(class_names(model))


def friendly_layer(model: str, layer: str) -> str:
    """A plain name for a layer by its place in the network: early / middle / late features, class scores."""
    names = list(layers(model))
    if layer == output_layer(model):
        return "class scores" if is_class_layer(model, layer) else "output"
    if layer not in names:
        return layer
    pos = names.index(layer) / max(len(names) - 1, 1)
    return "early features" if pos < 0.34 else "middle features" if pos < 0.67 else "late features"


def layer_caption(info: T.LayerInfo, model: str | None = None) -> str:
    where = f"{friendly_layer(model, info.name)} · " if model else ""
    return f"{where}{info.name} ({info.units})"


def find_classes(text: str, model: Optional[str] = None) -> list[int]:
    """The classes of `model` (default ImageNet's) one typed name stands for (names.find_in)."""
    return find_in(class_names(model), text)


def layer_names(model: str, layer: str) -> LayerNames:
    """The layer's size and, for a class layer, its class names (what the grid names its pictures by)."""
    return LayerNames(model, layer, layers(model)[layer].units,
                      class_names(model) if is_class_layer(model, layer) else None)


def unit_name(model: str, layer: str, unit: int) -> str:
    """'espresso (967)' for classes, 'unit 12' otherwise."""
    return layer_names(model, layer).unit_name(unit)


def class_label(i: int, model: Optional[str] = None) -> str:
    return f"{class_names(model)[i]} ({i})"


def markdown_name(text: str, model: Optional[str]) -> str:
    """A unit's or class's name for Markdown (st.info, st.caption, a subheader): an added network's names come
    from a user's file and may hold Markdown (`[click](https://...)`, `![i](http://...)`), so they are shown as
    written (app/plain.py); ImageNet's names are ours and stay as they are."""
    return text if model is None or imagenet_classifier(model) else plain(text)


# ----- priors -----

@dataclass(frozen=True)
class PriorChoice:
    name: str  # prior name, or "pixel"
    title: str
    available: bool
    kind: str  # original / trained / none
    depth: str
    fetch: Optional[str] = None


def prior_choices() -> list[PriorChoice]:
    """Every prior, present or not, in the paper's depth order (the catalogue's order)."""
    return [PriorChoice(e.name, e.title, e.available, e.prior_kind, e.depth,
                        fetch_command(e.fetch) if e.fetch else None) for e in C.priors()]


def available_priors() -> list[str]:
    return [c.name for c in prior_choices() if c.available]


def default_prior() -> str:
    """The engine's default prior when it is present; else the pixel baseline."""
    name = next((e.name for e in C.priors() if e.default), None)
    return name if name in available_priors() else PIXEL


def prior_title(name: str) -> str:
    """Plain words first, the technical name after: 'demo prior, learned from early features (lite0-b3)'."""
    if name == PIXEL:
        return "no prior (pixel-space baseline)"
    if name == MACO:
        return "no prior: MACO, today's best pixel-space method (natural spectrum, phase only)"
    spec = P.all_specs().get(name)
    if spec is None:
        return name
    if spec.kind == "trained":
        return f"demo prior, {prior_depth_words(spec.depth)} ({name}, plays {spec.depth})"
    return spec.title


def depth_lineup() -> list[tuple[str, Optional[PriorChoice]]]:
    """For each of the paper's depths the prior that plays it: the original when present, else a demo prior
    trained for that depth, else None."""
    choices = prior_choices()
    out = []
    for d in DEPTHS:
        cands = [c for c in choices if c.depth == d and c.available]
        cands.sort(key=lambda c: c.kind != "original")
        out.append((d, cands[0] if cands else None))
    return out


def prior_depth_words(depth: str) -> str:
    """One plain line under each column of Compare priors."""
    return {"conv3": "learned from early features", "pool5": "learned from middle features",
            "fc6": "learned from late features", "fc7": "learned from the latest features",
            "pixel": "no generator at all", "maco": "no generator, today's best pixel method"}.get(depth, "")


DEMO_CAVEAT = ("Demo priors are small generators trained here on a small photo corpus, so their pictures are rough. "
               "The original priors of the paper give paper-quality images: run "
               f"`{fetch_command('fc6')}` in the project folder, or the Setup page (needs internet once).")
DEMO_CAVEAT_SHORT = ("Demo priors are small generators trained here on a small photo corpus, so their pictures are "
                     "rough; the original priors of the paper give paper-quality images.")


def demo_caveat(presenting: bool = False) -> str:
    """The caveat under demo-prior pictures; on a projector without the terminal command."""
    return DEMO_CAVEAT_SHORT if presenting else DEMO_CAVEAT


NO_PRIOR = ("No generator prior is installed, so DGN-AM cannot run yet. Fetch the paper's best prior with "
            f"`{fetch_command('fc6')}` in the project folder (or from the Setup page; needs internet once) and "
            "reload this page. Until then you can "
            "try the pixel-space baseline below.")
