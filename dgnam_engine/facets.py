"""Many-sided neurons (the multifaceted method the paper discusses): cluster a unit's top real photos in the prior
encoder's feature space, start DGN-AM from each cluster's mean code (the photos encoded as a photo start encodes
them: photo_init.py) and render one picture per cluster. Their diversity (mean pairwise distance in that feature
space) is comparable with that of the same unit rendered from several random seeds."""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from .errors import UserError

TOP_PHOTOS = 9  # the examples index keeps this many photos per unit


def kmeans(x: np.ndarray, k: int, iters: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic k-means: farthest-point start from the first row (the unit's best photo), then Lloyd steps.
    Returns (labels (N,), centres (k, D)); ties go to the lower cluster index."""
    x = np.asarray(x, np.float64)
    if not 1 <= k <= len(x):
        raise UserError(f"cannot make {k} clusters of {len(x)} photos")
    centres = [x[0]]
    for _ in range(1, k):
        d = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(x[int(np.argmax(d))])
    c = np.stack(centres)
    labels = np.full(len(x), -1)
    for _ in range(iters):
        new = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(2), 1)
        if np.array_equal(new, labels):
            break
        labels = new
        c = np.stack([x[labels == j].mean(0) if (labels == j).any() else c[j] for j in range(k)])
    return labels, c


def diversity(features: np.ndarray) -> float:
    """Mean pairwise Euclidean distance between pictures' features (0 for one picture)."""
    from .neighbours import distances

    f = np.asarray(features, np.float64)
    if len(f) < 2:
        return 0.0
    d = distances(f, f)
    return float(d[np.triu_indices(len(f), 1)].mean())


@dataclass
class Facets:
    unit: int
    label: str
    images: list[np.ndarray]
    clusters: list[list[str]]  # the photo files of each cluster
    diversity: float
    activations: list[float]
    space: tuple[str, str]
    extra: dict = field(default_factory=dict)


def top_photos(model: str, layer: Optional[str], unit: int, progress=None) -> list[str]:
    """The unit's top photos of the offline collection (the examples index; built once, with progress)."""
    from . import dataset_index as D
    from .runner import get_target
    from .store import default_root, file_identity

    tgt = get_target(model)
    info = tgt.layer(layer)
    db = D.ExamplesDB(default_root())
    wid = file_identity(tgt.weights_path)
    idx, rows = D.examples(db, tgt.name, wid, info.name, unit, TOP_PHOTOS)
    if idx is None:
        with contextlib.redirect_stdout(sys.stderr):  # the corpus builder's notes must not mix into --json output
            folder = D.default_folder()
        D.build(tgt, wid, [info.name], folder, db, progress=progress)
        idx, rows = D.examples(db, tgt.name, wid, info.name, unit, TOP_PHOTOS)
    return [r.image for r in rows]


def render(model: str, unit: int, k: int, layer: Optional[str] = None, prior_name: Optional[str] = None,
           photos: Optional[Sequence[str]] = None, progress: Optional[Callable] = None,
           steps: Optional[int] = None, device: str = "cpu") -> Facets:
    """K pictures of one unit, one from each cluster of its top photos (photos default to the examples index), on
    `device`. No seed: each facet starts from its cluster's code, not a random one."""
    from . import dgnam, photo_init
    from . import accel as A
    from .neighbours import embed, space_for
    from .photos import read_photo
    from .runner import get_prior, get_target
    from .convention import to_uint8

    if k < 1:
        raise UserError(f"--facets must be at least 1, not {k}")
    tgt = get_target(model, device)
    info = tgt.layer(layer)
    tgt.check_unit(info, unit)
    pr = get_prior(prior_name, device=device)
    files = list(photos) if photos is not None else top_photos(model, layer, unit, progress)
    if len(files) < k:
        raise UserError(f"unit {unit} has {len(files)} top photos in the collection; cannot make {k} facets")
    rgbs = [read_photo(f) for f in files]
    space = space_for(pr.name)
    labels, _ = kmeans(embed(rgbs, *space), k)
    enc_model, _ = photo_init.encoder_of(pr)
    encoder = get_target(enc_model, device)
    codes = torch.stack([photo_init.encode_photo(pr, encoder, im).code for im in rgbs])
    starts = torch.stack([codes[torch.as_tensor(labels == j)].mean(0) for j in range(k)])
    starts = torch.minimum(torch.maximum(starts, pr.lower), pr.upper)
    n = steps or photo_init.PHOTO_ITERS  # the photo-start schedule: a facet should stay near its cluster
    lr0 = tgt.spec.lr[0] * pr.lr_scale * photo_init.PHOTO_LR_FACTOR
    res = dgnam.run(pr.generator, tgt, info, [unit] * k, lower=pr.lower, upper=pr.upper, seeds=list(range(k)),
                    n_iters=n, lr_start=lr0, lr_end=tgt.spec.lr[1], init_codes=starts,
                    accel=A.resolve("auto", tgt.device))
    images = to_uint8(res.images)
    return Facets(unit, tgt.unit_label(info, unit), images,
                  [[Path(files[i]).name for i in np.flatnonzero(labels == j)] for j in range(k)],
                  diversity(embed(images, *space)), [float(a) for a in res.activations[-1]], space,
                  {"steps": n})


def seed_diversity(images: Sequence[np.ndarray], prior_name: Optional[str]) -> float:
    """The same figure for pictures of one unit from several random seeds."""
    from .neighbours import embed, space_for

    return diversity(embed(list(images), *space_for(prior_name)))


def print_progress(done, total, rate) -> None:
    print(f"indexing the offline photos: {done}/{total} ({rate:.1f}/s)", file=sys.stderr, flush=True)
