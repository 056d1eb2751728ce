"""Does a picture reach its unit the way real photos do? (Geirhos et al. 2024 showed a visualisation can be faked
while the unit's activation barely moves, so a picture needs a check of its own.) For a class unit of
EfficientNet-Lite0, the layer below the logits is the pooled head features: the picture's features there are
compared (cosine, measured from the pool's mean) with the mean features of the unit's top photos, and that
similarity is ranked among the same similarity for every other photo of the pool (random photos). The number is
that rank as a fraction: 0.97 means the picture sits nearer the unit's top photos than 97% of the photos do.

    same path      >= 0.90  (as near the top photos as the unit's own strong photos are)
    another path   below

The pool is the quiz's (quiz.Pool: the shipped training photos, or a user's folder). Checks are kept beside the
results store, one small JSON file per result key, as second opinions are."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Optional

import numpy as np

from . import quiz as Q

PASS_AT = 0.90
LAYER_BELOW = "pooled"
TOP = Q.REFERENCES


def _unit_rows(v: np.ndarray) -> np.ndarray:
    v = np.atleast_2d(np.asarray(v, np.float64))
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def check(image: np.ndarray, unit: int, pool: Optional[Q.Pool] = None, layer: str = "classifier") -> dict:
    """{"word", "number", ...} for one RGB uint8 picture of a unit of Lite0's class layer."""
    from .neighbours import embed

    if layer != "classifier":
        raise Q.UserError("the path check knows the class layer of efficientnet_lite0 (the pooled features below it)")
    pool = pool or Q.shipped_pool()
    feats = pool.features.astype(np.float64)
    centre = feats.mean(0)
    acts = pool.activations(layer)[:, int(unit)]
    top = np.argsort(-acts, kind="stable")[:TOP]
    direction = _unit_rows(feats[top].mean(0) - centre)[0]
    rest = np.setdiff1d(np.arange(len(pool)), top)
    others = _unit_rows(feats[rest] - centre) @ direction
    mine = float(_unit_rows(embed([image], Q.MODEL, LAYER_BELOW)[0] - centre)[0] @ direction)
    number = float((others < mine).mean())
    return {"word": "same path" if number >= PASS_AT else "another path", "number": round(number, 3),
            "similarity": round(mine, 4), "layer_below": f"{Q.MODEL}:{LAYER_BELOW}", "unit": int(unit),
            "top_photos": [pool.files[j] for j in top], "compared_with": int(len(rest)), "pool": pool.name}


def describe(c: dict) -> str:
    """One line for a card: 'same path (0.97): nearer the unit's top photos, one layer down, than 97% of photos'."""
    return (f"{c['word']} ({c['number']:.2f}): one layer down, nearer the unit's top photos than "
            f"{c['number']:.0%} of {c['compared_with']} photos")


def _path(root: Path, key: str) -> Path:
    return Path(root) / "path_checks" / f"{key}.json"


def stored(root: Path, key: str) -> Optional[dict]:
    try:
        return json.loads(_path(root, key).read_text())
    except (OSError, ValueError):
        return None


def for_result(root: Path, key: str, image: np.ndarray, unit: int) -> dict:
    """The stored check of a stored result, computed and kept (best effort) on first use."""
    c = stored(root, key)
    if c is None:
        c = check(image, unit)
        p = _path(root, key)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex}.part")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(c))
            os.replace(tmp, p)
        except OSError:
            tmp.unlink(missing_ok=True)
    return c
