"""The paper's runs on a network trained on scenes (its code's script 2: five fc8 scene classes; script 4: five
conv5 units at (6, 6)), on whichever scene network is here. Classes move between Places205 and Places365 by name
(Places205 alley 2 is Places365 alley 4); conv5 units keep their numbers, which only the paper's own Places205
CaffeNet gives the paper's meaning.

`python -m dgnam_engine places --out DIR` renders them (`places --help`).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import class_lists
from . import targets as T
from .cli_options import add_model_options, add_output_options, add_prior_options, check_writable, whole_arg
from . import json_out
from .errors import UserError
from .numbers import MAX_SEED

SCENE_CLASSES = ("alley", "arch", "art_gallery", "auditorium", "doorway/outdoor")  # script 2, fc8
CONV5_UNITS = (8, 55, 154, 181, 45)  # script 4, at (6, 6), cropped to the units' field in the paper
CONV5_XY = (6, 6)
# The paper's own network first, then the closest architecture to it.
PREFERENCE = ("caffenet_places205", "caffenet_places365", "alexnet_places365", "resnet18_places365",
              "resnet50_places365")


@dataclass(frozen=True)
class PaperRun:
    what: str  # "scenes" or "conv5"
    layer: str
    units: tuple[int, ...]
    labels: tuple[str, ...]
    position: Optional[tuple[int, int]] = None


def scene_network(random_weights: bool = False) -> str:
    """The first scene network whose weights are here (any, with random weights); UserError saying how to get one."""
    for name in PREFERENCE:
        if random_weights or T.weights_available(T.TARGETS[name]):
            return name
    raise UserError("no scene network is here: run `python -m dgnam_engine fetch resnet18_places365` (or "
                    "`fetch NAME --from FILE` with a file you have); `models` lists them")


def runs_for(model: str) -> list[PaperRun]:
    """The paper's Places runs as `model` can run them: the scene classes by name in its own class list, and the
    conv5 units at (6, 6) where it has a conv5 layer with that position."""
    spec = T.get_spec(model)
    names = spec.classes()
    units = [class_lists.find(names, c) for c in SCENE_CLASSES]
    if any(u is None for u in units):
        missing = [c for c, u in zip(SCENE_CLASSES, units) if u is None]
        raise UserError(f"{model} has no class {', '.join(missing)}: the paper's scene runs need Places classes")
    out = [PaperRun("scenes", spec.output_layer, tuple(units), SCENE_CLASSES)]
    # the AlexNet family's layer lists do not depend on the built model; the ResNets have no conv5
    layer_names = [ls.name for ls in spec.layers(None)] if spec.family in ("caffenet", "alexnet") else []
    if "conv5" in layer_names:
        out.append(PaperRun("conv5", "conv5", CONV5_UNITS, tuple(f"conv5 unit {u}" for u in CONV5_UNITS), CONV5_XY))
    return out


def cmd_places(args) -> int:
    from .imaging import save_png
    from .runner import Settings, visualize

    model = args.model or scene_network(args.random_weights)
    out = Path(args.out)
    if out.suffix.lower() == ".png":
        raise UserError("--out is a folder: the runs write one picture per unit")
    check_writable(out / "x.png")
    runs = runs_for(model)
    if args.only is not None:
        runs = [r for r in runs if r.what == args.only]
        if not runs:
            raise UserError(f"{model} has no conv5 layer to run the paper's conv5 units on (only the CaffeNet and "
                            f"AlexNet scene networks have one): pick one with --model, or run --only scenes"
                            if args.only == "conv5" else f"{model} cannot run the paper's {args.only} runs")
    summaries, pending = [], []
    for run in runs:
        settings = Settings(prior=args.prior, n_iters=args.iters, seed=args.seed, position=run.position)
        results = visualize(model, list(run.units), run.layer, settings, device=args.device,
                            model_weights=args.weights, prior_file=args.prior_file,
                            random_weights=args.random_weights)
        for r in results:
            p = out / f"{model}_{r.layer}_{r.unit:04d}.png"
            pending.append((r.image, p))
            summaries.append({**{k: v for k, v in r.summary().items() if k != "activations"}, "run": run.what,
                              "image": str(p)})
    for image, p in pending:  # everything ran; only now is anything written
        try:
            save_png(image, p)
        except OSError as exc:
            raise UserError(f"cannot write {p}: {exc.strerror or exc}") from None
    if args.json:
        print(json_out.dumps(summaries))
    else:
        for d in summaries:
            print(f"{d['model']} {d['layer']} unit {d['unit']} ({d['label']}): activation "
                  f"{d['activation_start']:.2f} -> {d['activation_final']:.2f} -> {d['image']}", file=sys.stdout)
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("places", help="the paper's runs on a scene network: alley, arch, art gallery, auditorium, "
                       "doorway/outdoor, and conv5 units at (6, 6)")
    add_model_options(s, device="cpu")
    add_prior_options(s)
    s.add_argument("--only", choices=["scenes", "conv5"], default=None, help="one of the two runs")
    s.add_argument("--iters", type=whole_arg("--iters"), default=None)
    s.add_argument("--seed", type=whole_arg("--seed", high=MAX_SEED), default=0)
    s.add_argument("--out", required=True, help="folder for the pictures")
    add_output_options(s)
    s.set_defaults(func=cmd_places)
