"""DGN-AM against MACO and the old pixel baseline: does an independent classifier recognise their pictures, at full
size and after shrinking each picture to 48 px and back? And how long does each take per unit, in one run?

The same 20 ImageNet classes of EfficientNet-Lite0 (spread evenly over the 1000, as eval_priors picks them) and
the same seed for every method, each with its own defaults on the fp32 reference loop (accel "plain", as
eval_priors measures): DGN-AM with the default demo prior (lite0-b3, 200 steps), MACO (256 NAdam steps, 6 crops)
and the pixel baseline (200 steps, jitter and blur). The judge is EfficientNet-Lite2 (eval_priors.load_judge):
another architecture with separately trained weights, which the optimisation never saw.

    python bench/bench_maco.py --json                     # the table, then one JSON line
    python bench/bench_maco.py --classes 4 --steps 20     # a quick look (not the measurement)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import dgnam_engine  # noqa: E402,F401  (first: sets how OpenMP threads wait, before torch loads)
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dgnam_engine.imagenet import class_names  # noqa: E402
from dgnam_engine.imaging import save_png  # noqa: E402
from dgnam_engine.runner import Settings, get_target, visualize  # noqa: E402
from dgnam_engine.training.eval_priors import default_classes, judge_ranks, load_judge  # noqa: E402

SMALL = 48  # px: evidence that lives in fine pixel patterns does not survive this
METHODS = {"dgnam": "DGN-AM, demo prior lite0-b3", "pixel": "pixel baseline (jitter, blur, decay)",
           "maco": "MACO (phase of a natural spectrum)"}


def shrunk(image: np.ndarray, size: int = SMALL) -> np.ndarray:
    """The picture shrunk to `size` px (area average) and blown up again to its own size (bilinear)."""
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((size, size), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BILINEAR))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="every method's steps (default: each one's own)")
    ap.add_argument("--maco-steps", type=int, default=None, help="MACO's steps only (default: its own, 256)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", type=Path, default=None, help="also save every picture here")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods or not set(methods) <= set(METHODS):
        print(f"error: --methods takes a comma-separated list of {', '.join(METHODS)}", file=sys.stderr)
        return 2
    classes = default_classes(args.classes)
    target = get_target("efficientnet_lite0")
    judge = load_judge()
    rows = {}
    for m in methods:
        steps = args.maco_steps if m == "maco" and args.maco_steps else args.steps
        s = Settings(method=m, prior="lite0-b3" if m == "dgnam" else None, n_iters=steps, seed=args.seed,
                     accel="plain")
        t0 = time.perf_counter()
        results = visualize("efficientnet_lite0", classes, "classifier", s, target=target)
        seconds = time.perf_counter() - t0
        images = [r.image for r in results]
        full = judge_ranks(judge, images, classes)
        small = judge_ranks(judge, [shrunk(im) for im in images], classes)
        if args.out is not None:
            for c, im in zip(classes, images):
                save_png(im, args.out / f"{m}_{c:04d}.png")
        rows[m] = {"method": METHODS[m], "steps": results[0].n_iters,
                   "judge_top1": sum(r == 0 for r in full) / len(full),
                   "judge_top1_48px": sum(r == 0 for r in small) / len(small),
                   "judge_top5": sum(r < 5 for r in full) / len(full),
                   "judge_top5_48px": sum(r < 5 for r in small) / len(small),
                   "seconds_per_unit": round(seconds / len(classes), 2),
                   "per_class": [{"unit": c, "name": class_names()[c], "rank": a, "rank_48px": b}
                                 for c, a, b in zip(classes, full, small)]}
        print(f"{m}: judge top-1 {rows[m]['judge_top1']:.0%}, at 48 px {rows[m]['judge_top1_48px']:.0%}, "
              f"{rows[m]['seconds_per_unit']:.1f} s per unit", file=sys.stderr, flush=True)
        print(json.dumps({m: rows[m]}), file=sys.stderr, flush=True)  # each method's row as soon as it is in
    n = len(classes)
    print(f"\n{n} classes, seed {args.seed}, judge EfficientNet-Lite2 (top-1, in {n})")
    print(f"{'method':44} {'steps':>5} {'full size':>10} {'48 px':>10} {'s/unit':>8}")
    for m, r in rows.items():
        print(f"{r['method']:44} {r['steps']:>5} {round(r['judge_top1'] * n):>5}/{n:<4} "
              f"{round(r['judge_top1_48px'] * n):>5}/{n:<4} {r['seconds_per_unit']:>8.1f}")
    if args.json:
        print(json.dumps({"classes": classes, "seed": args.seed, "device": str(target.device),
                          "threads": torch.get_num_threads(), "methods": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
