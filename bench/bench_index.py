"""How fast `index` looks through photos: the offline corpus through EfficientNet-Lite0's classifier and blocks.5.

    python bench/bench_index.py --json          # builds the corpus into data/corpus first if it is missing
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from dgnam_engine import dataset_index as D
from dgnam_engine.runner import get_target
from dgnam_engine.store import file_identity


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", default="data/corpus", help="photo folder (built from installed packages if absent)")
    ap.add_argument("--layers", default="classifier,blocks.5")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    folder = Path(args.images)
    if not folder.is_dir() or not any(folder.glob("*.jpg")):
        from dgnam_engine.training.corpus import build_corpus

        build_corpus(folder)
    target = get_target("efficientnet_lite0", args.device)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        s = D.build(target, file_identity(target.weights_path), args.layers.split(","), folder,
                    D.ExamplesDB(Path(tmp)), batch=args.batch)
        s["wall_seconds"] = time.perf_counter() - t0
    out = {k: s[k] for k in ("images", "layers", "indexed", "unreadable", "seconds", "images_per_second")}
    out.update(device=args.device, batch=args.batch, wall_seconds=s["wall_seconds"])
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
