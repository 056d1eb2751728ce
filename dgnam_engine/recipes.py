"""The paper's own runs: the five scripts the original code ships (spec section 1.6), each as a recipe. On a
machine without the paper's networks a recipe runs on the closest setup present and says, in one line, what
differs (target, prior, units mapped by class name, the start photo)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from . import class_lists
from .errors import UserError


@dataclass(frozen=True)
class Recipe:
    name: str
    script: str
    title: str
    model: str  # the paper's network (a name of this project's registry, or one it does not have)
    layer: str
    units: tuple[int, ...]
    labels: tuple[str, ...]
    prior: str = "fc6"
    iters: int = 200
    lr: Optional[float] = None  # None: the model's default (8 for the AlexNet family, 2 for GoogLeNet)
    xy: Optional[tuple[int, int]] = None
    photo: Optional[str] = None  # the start photo of the original
    # stand-ins when `model` is missing, in order of preference: (model, layer, units, why those units)
    fallback: tuple = ()


# The paper's Places205 scenes found by name in Places365 (alley 4, arch 12, art_gallery 19, auditorium 27,
# doorway/outdoor 123), for each Places365 network in order of closeness to the paper's CaffeNet.
_SCENES_365 = tuple(class_lists.find(class_lists.places365(), n)
                    for n in ("alley", "arch", "art_gallery", "auditorium", "doorway/outdoor"))
_PLACES365_SCENES = tuple((m, layer, _SCENES_365, "the same scenes by name in Places365")
                          for m, layer in (("caffenet_places365", "fc8"), ("alexnet_places365", "fc8"),
                                           ("resnet18_places365", "fc"), ("resnet50_places365", "fc")))

PAPER = [
    Recipe("caffenet-classes", "1_activate_output.sh", "CaffeNet class units (the paper's figure 1)", "caffenet",
           "fc8", (643, 624, 304, 629, 437), ("mask", "library", "leaf beetle", "lipstick", "beacon"),
           fallback=(("efficientnet_lite0", "classifier", (643, 624, 304, 629, 437), "the same ImageNet classes"),)),
    Recipe("places-scenes", "2_activate_output_placesCNN.sh", "Places205 scene units (another dataset)",
           "caffenet_places205", "fc8", (2, 7, 8, 12, 71), ("alley", "arch", "art gallery", "auditorium", "doorway"),
           fallback=_PLACES365_SCENES + (
                     ("caffenet", "fc8", (873, 624, 498, 449, 799), "ImageNet's nearest scene classes by name "
                      "(triumphal arch, library, cinema, boathouse, sliding door)"),
                     ("efficientnet_lite0", "classifier", (873, 624, 498, 449, 799),
                      "ImageNet's nearest scene classes by name (triumphal arch, library, cinema, boathouse, "
                      "sliding door)"))),
    Recipe("bell-pepper-photo", "3_start_from_real_image.sh", "Bell pepper from a photo (30 steps, lr 1)",
           "caffenet", "fc8", (945,), ("bell pepper",), iters=30, lr=1.0, photo="images/red_pepper.jpg",
           fallback=(("efficientnet_lite0", "classifier", (945,), "the same ImageNet class"),)),
    Recipe("conv5-hidden", "4_activate_hidden.sh", "Hidden conv5 units at (6, 6), cut to their 163 px field",
           "caffenet_places205", "conv5", (8, 55, 154, 181, 45),
           ("lighthouse", "building", "bookcase", "food", "painting"), xy=(6, 6),
           fallback=(("caffenet_places365", "conv5", (8, 55, 154, 181, 45), "CaffeNet-Places365 conv5 units with "
                      "the same numbers (no unit matches by name)"),
                     ("caffenet", "conv5", (15, 20, 27, 55, 85), "CaffeNet conv5 units of the original's earlier "
                      "script (2_activate_hidden.sh)"),
                     ("efficientnet_lite0", "blocks.5", (8, 55, 154, 181, 45),
                      "Lite0's blocks.5 units with the same numbers (no unit matches by name)"))),
    Recipe("googlenet-classes", "5_activate_output_GoogLeNet.sh", "GoogLeNet class units (lr 2)", "googlenet",
           "fc", (643, 624, 304, 629, 437), ("mask", "library", "leaf beetle", "lipstick", "beacon"), lr=2.0,
           fallback=(("efficientnet_lite0", "classifier", (643, 624, 304, 629, 437), "the same ImageNet classes"),)),
]
BY_NAME = {r.name: r for r in PAPER}


@dataclass
class Plan:
    """What a recipe runs here."""

    recipe: Recipe
    model: str
    layer: str
    units: list[int]
    prior: str
    iters: int
    lr: Optional[float]
    xy: Optional[tuple[int, int]]
    photo: Optional[str]
    differs: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not self.differs

    def note(self) -> str:
        return "as the paper ran it" if self.exact else "differs from the paper: " + "; ".join(self.differs)


def _model_present(name: str) -> bool:
    from . import targets as T

    return name in T.TARGETS and T.weights_available(T.TARGETS[name])


def _prior_present(name: str) -> bool:
    from . import priors as P

    try:
        return P.is_available(P.get_spec(name))
    except UserError:
        return False


def _sample_photo() -> str:
    """A photo a fresh install has (scikit-image ships it), written once into the data folder."""
    import skimage.data
    from PIL import Image

    from .store import default_root

    path = default_root() / "recipes" / "coffee.png"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(skimage.data.coffee()).save(path)
    return str(path)


def plan(name: str, materialise: bool = True) -> Plan:
    """The recipe as it runs on this machine, with every difference from the paper named. `materialise=False`
    only describes it (no start photo is written)."""
    from . import priors as P

    if name not in BY_NAME:
        raise UserError(f"unknown recipe {name!r}; recipes: {', '.join(BY_NAME)}")
    r = BY_NAME[name]
    differs = []
    model, layer, units = r.model, r.layer, list(r.units)
    xy, lr = r.xy, r.lr
    if not _model_present(r.model):
        present = [f for f in r.fallback if _model_present(f[0])]
        if not present:
            raise UserError(f"recipe {name} needs {r.model}, and none of its stand-ins is here")
        model, layer, fb_units, why = present[0]
        units = list(fb_units)
        differs.append(f"target {model} {layer} instead of {r.model} {r.layer} (not here); units: {why}")
        if xy is not None and model == "efficientnet_lite0":
            xy = None
            differs.append("position: the map's centre instead of (6, 6)")
    prior = r.prior
    if not _prior_present(prior):
        prior = P.default_prior_name()
        differs.append(f"prior {prior} instead of {r.prior} (not here)")
    if lr is not None and (model, prior) != (r.model, r.prior):
        lr = None  # an explicit rate is not rescaled: this target's and prior's own default keeps the paper's ratio
        differs.append(f"learning rate: the default for {model} with {prior} instead of {r.lr}")
    photo = None
    if r.photo:
        photo = _sample_photo() if materialise else "coffee.png"
        differs.append(f"starts from scikit-image's coffee photo (the original {r.photo} does not ship)")
    return Plan(r, model, layer, units, prior, r.iters, lr, xy, photo, differs)


def listing() -> list[dict]:
    out = []
    for r in PAPER:
        needs = [r.model, f"prior {r.prior}"]
        runs_exact = _model_present(r.model) and _prior_present(r.prior) and not r.photo
        out.append({"name": r.name, "script": r.script, "title": r.title, "model": r.model, "layer": r.layer,
                    "units": list(r.units), "labels": list(r.labels), "iters": r.iters, "lr": r.lr,
                    "xy": list(r.xy) if r.xy else None, "needs": needs, "as_in_the_paper": runs_exact,
                    "here": plan(r.name, materialise=False).note()})
    return out
