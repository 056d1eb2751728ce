"""The paper's questions (RQ1-RQ5), each as one small experiment on this machine's setup: the demo setup offline
(EfficientNet-Lite0 with the default demo prior), the paper's own (CaffeNet, fc6) when its weights are present.
`python -m dgnam_engine paper --json` runs them all; the dashboard's paper page runs each with one button.

Every picture goes through the results store (a rerun, and the shipped atlas, answer from it), second opinions are
kept with the store, and the memorisation check uses the shipped features of the demo priors' training photos."""
from __future__ import annotations

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


@dataclass
class Context:
    """What every experiment shares: the setup, the store and the pictures already made in this run."""

    units: Sequence[int]
    facets: int = 3
    steps: Optional[int] = None  # None: the defaults (200 steps; 30 for facets); a few for quick looks and tests
    model: str = ""
    prior: str = ""
    progress: Optional[Callable[[str], None]] = None
    made: dict = field(default_factory=dict)  # (model, method, seed) -> list of (key, image)
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


def default_units(n: int) -> list[int]:
    """n ImageNet classes evenly spread over the 1000 (no hand picking; as eval_priors chooses them)."""
    return [int(i) for i in np.linspace(1, 981, n).round()]


def pictures(ctx: Context, model: str, units: Sequence[int], settings: Settings) -> list[tuple[str, np.ndarray]]:
    """(store key, RGB picture) per unit: from the store (and the shipped atlas), else rendered in one batch and
    stored."""
    from PIL import Image

    from .request import Request
    from .runner import visualize

    seed = settings.seed
    ids = Request(model, list(units), None, settings, [seed] * len(units), device="auto").identities()
    have = {i.key: ctx.store.get(i.key) for i in ids}
    missing = [u for u, i in zip(units, ids) if have[i.key] is None]
    if missing:
        what = {"pixel": "the pixel baseline", "maco": "MACO"}.get(settings.method,
                                                                 f"DGN-AM ({settings.prior or ctx.prior})")
        ctx.say(f"rendering {len(missing)} pictures with {what} on {model} (seed {seed})...")
        t0 = time.perf_counter()
        for r in visualize(model, missing, None, settings, device="auto"):
            have[r.identity.key] = ctx.store.put(r)  # keyed by the run that made it
        ctx.say(f"  {time.perf_counter() - t0:.0f} s")
    return [(i.key, np.array(Image.open(have[i.key].image_path).convert("RGB"))) for i in ids]


def _opinions(ctx: Context, model: str, prior: str, units: Sequence[int], made) -> Optional[list[dict]]:
    from .imagenet import class_names

    names = class_names()
    if J.applies(model, _output_layer(model), units[0], names[units[0]], prior) is not None:
        return None
    return [J.for_result(ctx.store.root, key, image, u) for (key, image), u in zip(made, units)]


def _output_layer(model: str) -> str:
    from .targets import get_spec

    return get_spec(model).output_layer


def _recognition(ops: Optional[list[dict]]) -> dict:
    if ops is None:
        return {"judge": None}
    ranks = [o["rank"] for o in ops]
    return {"judge": J.JUDGE_NAME, "top1": round(sum(r == 1 for r in ranks) / len(ranks), 3),
            "top5": round(sum(r <= 5 for r in ranks) / len(ranks), 3), "median_rank": float(np.median(ranks)),
            "ranks": ranks}


# MACO takes 6 crops a step: half its 256 default steps keeps the whole run within 20 minutes on 2 CPU cores
MACO_STEPS = 128


def _made(ctx: Context, model: str, method: str, seed: int = 0):
    k = (model, method, seed)
    if k not in ctx.made:
        if method == "pixel":
            s = Settings(method="pixel", seed=seed, n_iters=ctx.steps)
        elif method == "maco":
            s = Settings(method="maco", seed=seed, n_iters=ctx.steps or MACO_STEPS)
        else:
            s = Settings(prior=ctx.prior, seed=seed, n_iters=ctx.steps)
        ctx.made[k] = pictures(ctx, model, ctx.units, s)
    return ctx.made[k]


def _novelty(images: Sequence[np.ndarray], prior: str) -> Optional[dict]:
    coll = N.shipped()
    if coll.space != N.space_for(prior):
        return None  # the original priors: their training photos (ImageNet) do not ship
    res = N.check(list(images), coll, k=1)
    nov = [r["novelty"] for r in res]
    return {"collection": coll.name, "space": ":".join(coll.space), "mean": round(float(np.mean(nov)), 3),
            "min": round(float(np.min(nov)), 3), "per_picture": nov,
            "nearest": [r["deep"][0]["file"] for r in res]}


# --- the five experiments: each returns (numbers, pictures as (caption, image)) --------------------------------

def rq1(ctx: Context):
    from .imagenet import class_names

    names = class_names()
    out = {"question": QUESTIONS["rq1"], "target": ctx.model, "prior": ctx.prior, "units": list(ctx.units),
           "methods": {}}
    per_method = []
    for method in ("dgnam", "pixel", "maco"):  # DGN-AM, the 2016 pixel baseline, today's best pixel method
        made = _made(ctx, ctx.model, method)
        ctx.say(f"second opinions on the {method} pictures...")
        ops = _opinions(ctx, ctx.model, ctx.prior if method == "dgnam" else method, ctx.units, made)
        out["methods"][method] = _recognition(ops)
        per_method.append([(f"{method}: {names[u]}" + (f" (judge #{o['rank']})" if o else ""), im)
                           for (_, im), u, o in zip(made, ctx.units, ops or [None] * len(made))])
    out["paper_found"] = PAPER_FOUND["rq1"]
    out["maco_steps"] = ctx.steps or MACO_STEPS
    return out, [p for trio in zip(*per_method) for p in trio]  # each unit's three pictures side by side


def rq2(ctx: Context):
    """The paper's second script: the scene units alley, arch, art gallery, auditorium and doorway of a network
    trained on Places, drawn through the ImageNet-learned prior, on the first scene network whose weights are here."""
    from . import places_runs as PR
    from .errors import UserError

    out = {"question": QUESTIONS["rq2"], "prior": ctx.prior, "paper_found": PAPER_FOUND["rq2"]}
    try:
        model = PR.scene_network()
    except UserError as exc:
        return {**out, "ran": False, "targets_from_other_datasets": 0,
                "reason": f"no network trained on Places205/365 scenes has its weights here; {exc}"}, []
    scenes = next(r for r in PR.runs_for(model) if r.what == "scenes")
    made = pictures(ctx, model, list(scenes.units), Settings(prior=ctx.prior, n_iters=ctx.steps))
    stored = [ctx.store.get(key) for key, _ in made]
    nov = _novelty([im for _, im in made], ctx.prior)
    out.update(ran=True, targets_from_other_datasets=1, target=model,
               units={name: int(u) for name, u in zip(scenes.labels, scenes.units)},
               activation_start=[round(r.activation_start, 3) for r in stored],
               activation_final=[round(r.activation_final, 3) for r in stored],
               novelty_mean=nov["mean"] if nov else None)
    return out, [(f"{model}: {name}", im) for name, (_, im) in zip(scenes.labels, made)]


def rq3(ctx: Context):
    from . import targets as T
    from .imagenet import class_names

    names = class_names()
    # the same ImageNet classes on every ImageNet classifier here (scene networks are RQ2's)
    present = [n for n, s in T.TARGETS.items() if s.dataset == "ImageNet" and T.weights_available(s)]
    encoder = J.encoder_model(ctx.prior)
    out = {"question": QUESTIONS["rq3"], "prior": ctx.prior, "prior_encoder": encoder, "units": list(ctx.units),
           "targets": {}}
    pics = []
    for model in present:
        made = _made(ctx, model, "dgnam")
        ops = _opinions(ctx, model, ctx.prior, ctx.units, made)
        nov = _novelty([im for _, im in made], ctx.prior)
        out["targets"][model] = {"is_prior_encoder": model == encoder, **_recognition(ops),
                                 "novelty_mean": nov["mean"] if nov else None}
        pics += [(f"{model}: {names[u]}", im) for (_, im), u in list(zip(made, ctx.units))[:4]]
    out["targets_missing"] = [n for n, s in T.TARGETS.items() if s.dataset == "ImageNet" and n not in present]
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


def rq4(ctx: Context):
    from . import facets as F

    made = _made(ctx, ctx.model, "dgnam")
    unit_images = [im for _, im in made]
    pixel = ctx.made.get((ctx.model, "pixel", 0))  # made by rq1; rq4 alone does not render the baseline
    alone = prior_alone(ctx, len(ctx.units))
    space = N.space_for(ctx.prior)
    d_units = F.diversity(N.embed(unit_images, *space))
    d_alone = F.diversity(N.embed(alone, *space))
    out = {"question": QUESTIONS["rq4"], "target": ctx.model, "prior": ctx.prior, "units": list(ctx.units),
           "novelty_dgnam": _novelty(unit_images, ctx.prior),
           "novelty_pixel": _novelty([im for _, im in pixel], ctx.prior) if pixel else None,
           "novelty_prior_alone": _novelty(alone, ctx.prior),
           "specificity": {"space": ":".join(space), "units_mean_distance": round(d_units, 3),
                           "prior_alone_mean_distance": round(d_alone, 3),
                           "ratio": round(d_units / d_alone, 3) if d_alone > 0 else None},
           "paper_found": PAPER_FOUND["rq4"]}
    pics = [("prior alone", im) for im in alone[:4]] + [("unit", im) for im in unit_images[:4]]
    return out, pics


def rq5(ctx: Context):
    from . import facets as F
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
    out = {"question": QUESTIONS["rq5"], "target": ctx.model, "prior": prior, "k": ctx.facets, "units": {}}
    if note:
        out["note"] = note
    pics = []
    for u in FACET_UNITS:
        ctx.say(f"facets of unit {u} ({names[u]})...")
        f = F.render(ctx.model, u, ctx.facets, None, prior, progress=_index_progress(ctx), steps=ctx.steps)
        seeds = [pictures(ctx, ctx.model, [u], Settings(prior=prior, seed=s, n_iters=ctx.steps))[0][1]
                 for s in range(SEEDS)]
        ops = J.second_opinions(f.images, [u] * len(f.images)) if J.applies(
            ctx.model, _output_layer(ctx.model), u, names[u], prior) is None else None
        out["units"][str(u)] = {"label": f.label, "facets_diversity": round(f.diversity, 3),
                                "seeds_diversity": round(F.seed_diversity(seeds, prior), 3), "seeds": SEEDS,
                                "cluster_sizes": [len(c) for c in f.clusters],
                                "facet_judge_ranks": [o["rank"] for o in ops] if ops else None}
        pics += [(f"{names[u]}: facet {j + 1}", im) for j, im in enumerate(f.images)]
        pics += [(f"{names[u]}: seed {s}", im) for s, im in enumerate(seeds[:2])]
    out["paper_found"] = PAPER_FOUND["rq5"]
    return out, pics


def _index_progress(ctx: Context):
    state = {"last": 0.0}

    def progress(done, total, rate):
        if time.perf_counter() - state["last"] > 10 or done == total:
            state["last"] = time.perf_counter()
            ctx.say(f"  looking through the offline photos for the top photos: {done}/{total}")
    return progress


def results_folder() -> Path:
    from .store import default_root

    return default_root() / "paper"


def save(name: str, numbers: dict, pics: list) -> None:
    """Keep an experiment's numbers and pictures in the data folder (the page shows the last ones)."""
    import json
    import os

    from .imaging import save_png

    folder = results_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for i, (caption, image) in enumerate(pics):
            save_png(image, folder / f"{name}_{i:02d}.png")
            rows.append({"caption": caption, "file": f"{name}_{i:02d}.png"})
        tmp = folder / f".{name}.{os.getpid()}.part"
        tmp.write_text(json.dumps({"numbers": numbers, "pictures": rows}))
        os.replace(tmp, folder / f"{name}.json")
    except OSError:
        pass  # a read-only data folder: shown now, not kept


def load(name: str) -> Optional[dict]:
    """{"numbers", "pictures": [(caption, path)]} of the last run of an experiment, or None."""
    import json

    folder = results_folder()
    try:
        d = json.loads((folder / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None
    d["pictures"] = [(p["caption"], folder / p["file"]) for p in d.get("pictures", [])
                     if (folder / p["file"]).is_file()]
    return d


EXPERIMENTS = {"rq1": rq1, "rq2": rq2, "rq3": rq3, "rq4": rq4, "rq5": rq5}


def run_all(units: int = 8, facets: int = 3, progress: Optional[Callable[[str], None]] = None,
            steps: Optional[int] = None) -> dict:
    from .errors import UserError

    if units < 2:
        raise UserError(f"--units must be at least 2 (the specificity figure compares pictures), not {units}")
    if facets < 1:
        raise UserError(f"--facets must be at least 1, not {facets}")
    if steps is not None and not 1 <= steps <= 2000:
        raise UserError(f"--steps must be from 1 to 2000, not {steps}")
    ctx = Context(default_units(units), facets, steps, progress=progress or (lambda t: print(t, file=sys.stderr,
                                                                                    flush=True)))
    report = {"setup": {"target": ctx.model, "prior": ctx.prior, "judge": J.JUDGE_NAME, "units": list(ctx.units),
                        "steps": ctx.steps or "default"}}
    t0 = time.perf_counter()
    for name, fn in EXPERIMENTS.items():
        t = time.perf_counter()
        report[name], pics = fn(ctx)
        report[name]["seconds"] = round(time.perf_counter() - t, 1)
        save(name, report[name], pics)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report
