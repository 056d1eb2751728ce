"""Build the shipped photo index (assets/corpus_index/) from the demo priors' training corpus:

    python -m dgnam_engine.training.corpus data/corpus
    python -m dgnam_engine.training.corpus_index data/corpus assets/corpus_index

Every photo's Lite0 pooled features (float16) ship; a 48 px thumbnail ships only where the photo's licence allows it
without passing on further terms: public domain and CC0 as they are, CC-BY (not -SA) with the author credited in
README.md. Share-alike, GPL and FDL photos ship no thumbnail (their features only)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from ..neighbours import DEFAULT_SPACE, THUMB, embed
from ..photos import read_photo, square

PER_ROW = 16


def thumbnail_terms(licence: str) -> str:
    """'free' (no terms), 'credit' (name the author) or 'no' (terms a thumbnail would carry along)."""
    s = licence.lower().replace(" ", "-")
    if any(t in s for t in ("-sa", "sharealike", "gpl", "fdl")):
        return "no"
    if any(t in s for t in ("public-domain", "cc0", "no-known-copyright", "no-copyright")):
        return "free"
    if "cc-by" in s or "licenses/by/" in s:
        return "credit"
    return "no"


def credit_of(rec: dict) -> str:
    who = rec.get("author") or rec.get("copyright") or rec.get("attribution") or "unknown author"
    return f"{who} ({rec['licence']})" + (f", {rec['url']}" if rec.get("url") else "")


def build(corpus: Path, out: Path) -> dict:
    recs = json.loads((corpus / "SOURCES.json").read_text())["files"]
    recs = sorted(recs, key=lambda r: r["file"])
    images = [read_photo(corpus / r["file"]) for r in recs]
    feats = embed(images, *DEFAULT_SPACE).astype(np.float16)
    photos, thumbs = [], []
    for r, im in zip(recs, images):
        terms = thumbnail_terms(r["licence"])
        p = {"file": r["file"], "licence": r["licence"]}
        if terms == "credit":
            p["credit"] = credit_of(r)
        if terms != "no":
            p["thumb"] = len(thumbs)
            thumbs.append(square(im, THUMB))
        photos.append(p)
    out.mkdir(parents=True, exist_ok=True)
    rows = (len(thumbs) + PER_ROW - 1) // PER_ROW
    sheet = np.zeros((rows * THUMB, PER_ROW * THUMB, 3), np.uint8)
    for i, t in enumerate(thumbs):
        sheet[(i // PER_ROW) * THUMB:(i // PER_ROW + 1) * THUMB, (i % PER_ROW) * THUMB:(i % PER_ROW + 1) * THUMB] = t
    Image.fromarray(sheet).save(out / "thumbs.jpg", quality=88)
    np.save(out / "features.npy", feats)
    meta = {"name": "the demo priors' training photos (docs/corpus.md)", "space": list(DEFAULT_SPACE),
            "features": "features.npy", "thumbs": "thumbs.jpg", "thumb_size": THUMB, "photos": photos}
    (out / "photos.json").write_text(json.dumps(meta, indent=1) + "\n")
    credits = sorted({p["credit"] for p in photos if p.get("credit")})
    (out / "README.md").write_text(
        "# The demo priors' training photos, as the memorisation check needs them\n\n"
        f"`features.npy`: EfficientNet-Lite0 pooled features (float16) of all {len(photos)} photos of the offline "
        "corpus (docs/corpus.md), in the order of `photos.json`. `thumbs.jpg`: 48 px thumbnails, 16 a row, of "
        f"the {len(thumbs)} photos whose licence allows it (public domain, CC0, CC-BY); share-alike, GPL and FDL "
        "photos ship their features only. Rebuilt with `python -m dgnam_engine.training.corpus_index`.\n\n"
        "## Credits (CC-BY photos whose thumbnails are in thumbs.jpg)\n\n" + "".join(f"- {c}\n" for c in credits))
    return {"photos": len(photos), "thumbnails": len(thumbs), "credited": len(credits)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("out", type=Path)
    a = ap.parse_args(argv)
    print(json.dumps(build(a.corpus, a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
