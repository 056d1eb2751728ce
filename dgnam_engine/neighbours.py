"""The memorisation check (the paper's nearest-neighbour test): for a picture, the k nearest photos of a collection
in the prior encoder's deep feature space and in pixel space, each with its distance, and a novelty figure:

    novelty = distance to the nearest photo / median nearest-neighbour distance among the collection's own photos

so 1 means "as far from the collection as its photos are from each other" and a value near 0 a near copy.

Feature spaces: Lite0's pooled features for the demo priors (and the pixel baseline offline), CaffeNet fc7 for the
original priors. The demo priors' own training photos (docs/corpus.md) ship as a collection (assets/corpus_index/):
their Lite0 pooled features as float16 and 48 px thumbnails of those whose licences allow it (public domain, CC0,
CC-BY with credit in its README), so the check works on a fresh install. A user's folder is indexed once, with
progress, into the data folder and reused."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .assets import ASSETS
from .convention import from_uint8
from .errors import UserError
from .photos import read_photo, square

SHIPPED = ASSETS / "corpus_index"
THUMB = 48  # px: the shipped thumbnails
PIXEL = 32  # px: pixel space compares pictures at this size (RGB in [0, 1])
DEFAULT_SPACE = ("efficientnet_lite0", "pooled")
SPACES = {"efficientnet_lite0": DEFAULT_SPACE, "caffenet": ("caffenet", "fc7")}


# --- the numbers ------------------------------------------------------------------------------------------------

def distances(query: np.ndarray, coll: np.ndarray) -> np.ndarray:
    """Euclidean distances, (Q, N), in float64 (features ship as float16)."""
    q, c = np.asarray(query, np.float64), np.asarray(coll, np.float64)
    d2 = (q * q).sum(1)[:, None] + (c * c).sum(1)[None, :] - 2 * q @ c.T
    return np.sqrt(np.maximum(d2, 0))


def median_nn(coll: np.ndarray) -> float:
    """The median over the collection's photos of the distance to their nearest other photo."""
    d = distances(coll, coll)
    np.fill_diagonal(d, np.inf)
    return float(np.median(d.min(1)))


def nearest(query: np.ndarray, coll: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """For each query row, the k nearest collection rows as (index, distance), nearest first."""
    d = distances(query, coll)
    order = np.argsort(d, 1, kind="stable")[:, :k]
    return [[(int(j), float(d[i, j])) for j in row] for i, row in enumerate(order)]


def pixel_vectors(images: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([square(np.asarray(im), PIXEL).astype(np.float32).reshape(-1) / 255 for im in images])


# --- feature spaces ---------------------------------------------------------------------------------------------

def space_for(prior_name: Optional[str]) -> tuple[str, str]:
    """(model, layer) of the deep feature space for pictures made with this prior: its encoder's, when that
    network's weights are here (else Lite0's pooled features, which ship; results name the space used)."""
    from . import judge
    from . import targets as T

    space = SPACES.get(judge.encoder_model(prior_name) or "", DEFAULT_SPACE)
    if space != DEFAULT_SPACE and not T.weights_available(T.get_spec(space[0])):
        return DEFAULT_SPACE
    return space


@torch.no_grad()
def embed(images: Sequence[np.ndarray], model: str, layer: str, batch: int = 32) -> np.ndarray:
    """Deep features of RGB uint8 pictures or photos: the centre square at the network's input size, then the
    network's own normalisation, read at `layer` (flattened)."""
    from .runner import get_target

    tgt = get_target(model)
    info = tgt.layer(layer)
    size = tgt.spec.input_size
    out = []
    for i in range(0, len(images), batch):
        x = from_uint8([square(np.asarray(im), size) for im in images[i:i + batch]]).to(tgt.device)
        out.append(tgt.forward_to(tgt.preprocess(tgt.rgb_to_gen(x)), info).float().flatten(1).cpu())
    return torch.cat(out).numpy()


# --- collections ------------------------------------------------------------------------------------------------

@dataclass
class Collection:
    name: str
    space: tuple[str, str]
    features: np.ndarray  # (N, D) float16/32
    photos: list[dict]  # per photo: file, and where known licence, credit, thumb (index into thumbs) or path
    thumbs: Optional[np.ndarray] = None  # (T, THUMB, THUMB, 3) uint8
    pixels: Optional[np.ndarray] = None  # (N, PIXEL*PIXEL*3) or None rows -> see pixel_rows
    pixel_rows: Optional[np.ndarray] = None  # collection indices that have pixel vectors

    _median: Optional[float] = None

    @property
    def median_nn(self) -> float:
        if self._median is None:
            self._median = median_nn(self.features)
        return self._median

    def thumb(self, i: int) -> Optional[np.ndarray]:
        t = self.photos[i].get("thumb")
        if t is not None and self.thumbs is not None:
            return self.thumbs[t]
        path = self.photos[i].get("path")
        if path:
            try:
                return square(read_photo(path), THUMB)
            except UserError:
                return None
        return None


def _read_sprite(path: Path, n: int) -> np.ndarray:
    sheet = np.array(Image.open(path).convert("RGB"))
    per_row = sheet.shape[1] // THUMB
    return np.stack([sheet[(i // per_row) * THUMB:(i // per_row + 1) * THUMB,
                           (i % per_row) * THUMB:(i % per_row + 1) * THUMB] for i in range(n)])


def shipped(folder: Path = SHIPPED) -> Collection:
    """The demo priors' training photos as they ship (features, credits, thumbnails)."""
    meta_path = folder / "photos.json"
    if not meta_path.is_file():
        raise UserError(f"the shipped photo index is missing ({meta_path}); reinstall the project")
    meta = json.loads(meta_path.read_text())
    feats = np.load(folder / meta["features"])
    photos = meta["photos"]
    n_thumbs = sum(p.get("thumb") is not None for p in photos)
    thumbs = _read_sprite(folder / meta["thumbs"], n_thumbs) if n_thumbs else None
    rows = np.array([i for i, p in enumerate(photos) if p.get("thumb") is not None], dtype=int)
    pixels = pixel_vectors([thumbs[photos[i]["thumb"]] for i in rows]) if len(rows) else None
    return Collection(meta["name"], tuple(meta["space"]), feats, photos, thumbs, pixels, rows)


def _folder_files(folder: Path) -> list[str]:
    from .dataset_index import list_photos

    return list_photos(folder)


def folder_collection(folder: Path, space: tuple[str, str], cache_root: Path,
                      progress: Optional[Callable[[int, int], None]] = None) -> Collection:
    """A user's folder in a feature space, indexed once into cache_root/neighbours/ and reused while the folder's
    files (names, sizes, times) stay the same."""
    from .dataset_index import folder_identity

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"photo folder not found: {folder}")
    files = _folder_files(folder)
    if not files:
        raise UserError(f"no photos (.jpg, .png, ...) in {folder}")
    ident = hashlib.sha256(f"{folder_identity(folder, files)}|{space}".encode()).hexdigest()[:20]
    cache = Path(cache_root) / "neighbours" / f"{ident}.npz"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        kept = [str(f) for f in z["files"]]
        feats, pix = z["features"], z["pixels"]
    else:
        kept, feats, pix = [], [], []
        step = 32
        for i in range(0, len(files), step):
            ims = []
            for rel in files[i:i + step]:
                try:
                    ims.append(read_photo(folder / rel))
                    kept.append(rel)
                except UserError:
                    pass  # a damaged photo is left out, not fatal
            if ims:
                feats.append(embed(ims, *space))
                pix.append(pixel_vectors(ims))
            if progress:
                progress(min(i + step, len(files)), len(files))
        if not kept:
            raise UserError(f"none of the photos in {folder} could be read")
        feats, pix = np.concatenate(feats).astype(np.float16), np.concatenate(pix).astype(np.float16)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".part.npz")
            np.savez(tmp, files=np.array(kept), features=feats, pixels=pix)
            tmp.replace(cache)
        except OSError:
            pass  # a read-only data folder: indexed again next time
    photos = [{"file": f, "path": str(folder / f)} for f in kept]
    return Collection(str(folder), space, feats, photos, None, pix, np.arange(len(kept)))


# --- the check --------------------------------------------------------------------------------------------------

def check(images: Sequence[np.ndarray], coll: Collection, k: int = 5) -> list[dict]:
    """For each picture: its k nearest photos in deep feature space and in pixel space, and its novelty."""
    feats = embed(images, *coll.space)
    deep = nearest(feats, coll.features, k)
    pix_q = pixel_vectors(images)
    pix = nearest(pix_q, coll.pixels, k) if coll.pixels is not None and len(coll.pixel_rows) else [[]] * len(images)
    med = coll.median_nn
    out = []
    for i in range(len(images)):
        d0 = deep[i][0][1]
        out.append({
            "collection": coll.name, "space": ":".join(coll.space), "photos": len(coll.photos),
            "median_nn_distance": round(med, 4), "novelty": round(d0 / med, 4) if med > 0 else math.inf,
            "deep": [_row(coll, j, d) for j, d in deep[i]],
            "pixel": [_row(coll, int(coll.pixel_rows[j]), d) for j, d in pix[i]],
            "pixel_photos": int(len(coll.pixel_rows)) if coll.pixel_rows is not None else 0,
        })
    return out


def _row(coll: Collection, i: int, d: float) -> dict:
    p = coll.photos[i]
    row = {"file": p["file"], "distance": round(d, 4)}
    for key in ("licence", "credit"):
        if p.get(key):
            row[key] = p[key]
    return row


def collection_for(prior_name: Optional[str], images: Optional[str], cache_root: Path,
                   progress: Optional[Callable[[int, int], None]] = None) -> Collection:
    """The shipped training photos when they are in this prior's feature space, else the user's folder."""
    space = space_for(prior_name)
    if images:
        return folder_collection(Path(images), space, cache_root, progress)
    coll = shipped()
    if coll.space != space:
        raise UserError(f"the shipped photos are indexed in {':'.join(coll.space)}, but prior {prior_name} needs "
                        f"{':'.join(space)}: give a photo folder with --images (indexed once, then reused)")
    return coll
