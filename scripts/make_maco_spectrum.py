"""Remake assets/maco/: the natural magnitude spectrum and colour matrix that MACO (dgnam_engine/maco.py) keeps
fixed, measured on the colour photos of the offline corpus (docs/corpus.md).

    bash scripts/install_corpus_sources.sh && python -m dgnam_engine.training.corpus data/corpus
    python scripts/make_maco_spectrum.py --corpus data/corpus          # -> assets/maco/{magnitude,colour}.npy

Each colour photo (the corpus flags greyscale ones; they are left out) is resized so its short side is SIZE px
(Lanczos) and centre-cropped to SIZE x SIZE, in RGB [0, 1]. The colour matrix is the square root of the RGB
covariance of all those pixels (U sqrt(S) of its SVD, scaled so its largest column has norm 1): it maps three
uncorrelated channels to RGB. Each photo, minus the mean colour, is mapped back to those channels, and the magnitude
is the mean over photos of |rfft2| (orthonormal) per channel, stored as float16.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "assets" / "maco"
SIZE = 224  # EfficientNet-Lite0's input, the picture size MACO renders at by default


def load(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        im = ImageOps.fit(im.convert("RGB"), (size, size), Image.Resampling.LANCZOS)  # short side, centre crop
        return np.asarray(im, dtype=np.float64) / 255.0


def colour_sqrt(photos: np.ndarray) -> np.ndarray:
    pixels = photos.reshape(-1, 3)
    cov = np.cov(pixels, rowvar=False)
    u, s, _ = np.linalg.svd(cov)
    m = u * np.sqrt(s)
    m = m * np.where(m.sum(0) < 0, -1.0, 1.0)  # SVD's signs are arbitrary: make them repeatable
    return m / np.linalg.norm(m, axis=0).max()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=ROOT / "data" / "corpus", help="a folder built by corpus.py")
    ap.add_argument("--size", type=int, default=SIZE)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    manifest = args.corpus / "SOURCES.json"
    if not manifest.is_file():
        print(f"error: no corpus at {args.corpus}: build it with python -m dgnam_engine.training.corpus "
              f"{args.corpus}", file=sys.stderr)
        return 2
    records = [r for r in json.loads(manifest.read_text(encoding="utf-8"))["files"] if not r.get("grayscale")]
    photos = np.stack([load(args.corpus / r["file"], args.size) for r in records])  # (N, S, S, 3)
    colour = colour_sqrt(photos)
    centred = photos - photos.reshape(-1, 3).mean(0)
    decorrelated = centred @ np.linalg.inv(colour).T  # per pixel: RGB = colour @ d
    spectra = np.abs(np.fft.rfft2(decorrelated.transpose(0, 3, 1, 2), norm="ortho"))  # (N, 3, S, S//2+1)
    magnitude = spectra.mean(0)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "magnitude.npy", magnitude.astype(np.float16))
    np.save(args.out / "colour.npy", colour.astype(np.float32))
    print(json.dumps({"photos": len(records), "sources": dict(Counter(r["source"] for r in records)),
                      "size": args.size, "colour": np.round(colour, 4).tolist(),
                      "magnitude_shape": list(magnitude.shape), "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
