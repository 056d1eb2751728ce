"""The memorisation check (the paper's nearest-neighbour test): for a picture, the k nearest photos of a collection
in the prior encoder's deep feature space and in pixel space, each with its distance, and a novelty figure:

    novelty = distance to the nearest photo / median nearest-neighbour distance among the collection's own photos

so 1 means "as far from the collection as its photos are from each other" and a value near 0 a near copy.

Novelty is decided in spaces the optimisation does not push, both read on the picture at thumbnail size and each
normalised per picture (so a global colour or contrast shift, which a photo start makes, is not novelty): the
structure of its pixels (16 px luminance, zero mean, unit variance) and a perceptual space (the encoder's early
`blocks.1` features pooled to a 4x4 grid, centred per channel, unit length), the nearer of the two deciding. The deep pooled features are still listed (they name the nearest photo), but not used for the figure:
activation maximisation drives exactly those features to extremes, so there every result looks "new".
A verdict word goes with it: `copy` (below COPY), `close` (below CLOSE) or `new`.

Feature spaces: Lite0's pooled features for the demo priors (and the pixel baseline offline), CaffeNet fc7 for the
original priors. The demo priors' own training photos (docs/corpus.md) ship as a collection (assets/corpus_index/):
their Lite0 pooled features as float16 and 48 px thumbnails of those whose licences allow it (public domain, CC0,
CC-BY with credit in its README), so the check works on a fresh install. A user's folder is indexed once, with
progress, into the data folder and reused."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
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
PERCEPTUAL = ("efficientnet_lite0", "blocks.1")  # an early layer, read on the picture at thumbnail size
GRID = 4  # the perceptual features are average-pooled to GRID x GRID
STRUCTURE = 16  # px: the luminance structure space
DECIDING = ("structure", "perceptual")
COPY, CLOSE = 0.35, 0.9  # novelty below COPY: a copy; below CLOSE: close to a photo; else new (tests pin them)
INDEX_VERSION = 2  # folder indices hold pixel and perceptual vectors since version 2


def verdict(novelty: float) -> str:
    return "copy" if novelty < COPY else "close" if novelty < CLOSE else "new"


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


def as_thumb(image: np.ndarray) -> np.ndarray:
    """A picture as the shipped thumbnails hold photos (centre square, THUMB px, JPEG-free): queries and photos
    are compared at the same resolution."""
    return square(np.asarray(image), THUMB)


def structure_vectors(images: Sequence[np.ndarray]) -> np.ndarray:
    """The luminance of pictures seen at thumbnail size, STRUCTURE px, normalised to zero mean and unit variance."""
    out = []
    for im in images:
        g = np.asarray(Image.fromarray(as_thumb(im)).convert("L").resize((STRUCTURE, STRUCTURE), Image.BILINEAR),
                       np.float64)
        g = g - g.mean()
        out.append((g / (g.std() + 1e-6)).ravel())  # a flat picture stays all zeros
    return np.stack(out).astype(np.float32)


@torch.no_grad()
def perceptual_vectors(images: Sequence[np.ndarray]) -> np.ndarray:
    """Early features (PERCEPTUAL) of pictures seen at thumbnail size, pooled to GRID x GRID, centred per channel
    and scaled to unit length."""
    thumbs = [as_thumb(im) for im in images]
    out = []
    for i in range(0, len(thumbs), 64):
        f = torch.as_tensor(embed_maps(thumbs[i:i + 64], *PERCEPTUAL))
        f = torch.nn.functional.adaptive_avg_pool2d(f, GRID)
        f = (f - f.mean((2, 3), keepdim=True)).flatten(1)
        out.append(f / (f.norm(dim=1, keepdim=True) + 1e-6))
    return torch.cat(out).numpy()


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
def embed_maps(images: Sequence[np.ndarray], model: str, layer: str, batch: int = 32) -> np.ndarray:
    """Features of RGB uint8 pictures or photos as the network holds them at `layer`: the centre square at the
    network's input size, then the network's own normalisation."""
    from .runner import get_target

    tgt = get_target(model)
    info = tgt.layer(layer)
    size = tgt.spec.input_size
    out = []
    for i in range(0, len(images), batch):
        x = from_uint8([square(np.asarray(im), size) for im in images[i:i + batch]]).to(tgt.device)
        out.append(tgt.forward_to(tgt.preprocess(tgt.rgb_to_gen(x)), info).float().cpu())
    return torch.cat(out).numpy()


def embed(images: Sequence[np.ndarray], model: str, layer: str, batch: int = 32) -> np.ndarray:
    """Deep features at `layer`, flattened (N, D)."""
    f = embed_maps(images, model, layer, batch)
    return f.reshape(len(f), -1)


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
    perceptual: Optional[np.ndarray] = None  # (len(pixel_rows), D): PERCEPTUAL vectors of the same rows
    structure: Optional[np.ndarray] = None  # (len(pixel_rows), STRUCTURE**2) of the same rows

    _medians: dict = field(default_factory=dict)

    @property
    def median_nn(self) -> float:
        return self.median("deep")

    def vectors(self, space: str) -> Optional[np.ndarray]:
        if self.pixel_rows is not None and len(self.pixel_rows):  # the shipped thumbnails: computed on first use
            if space == "perceptual" and self.perceptual is None:
                self.perceptual = perceptual_vectors([self.thumb(int(i)) for i in self.pixel_rows])
            if space == "structure" and self.structure is None:
                self.structure = structure_vectors([self.thumb(int(i)) for i in self.pixel_rows])
        return {"deep": self.features, "pixel": self.pixels, "perceptual": self.perceptual,
                "structure": self.structure}[space]

    def median(self, space: str) -> float:
        """The median nearest-neighbour distance among the photos in a space; a collection too small or
        degenerate for a novelty figure is refused in one line."""
        if space not in self._medians:
            v = self.vectors(space)
            n = 0 if v is None else len(v)
            if n < 2:
                raise UserError(f"the collection {self.name} has {n} photo{'s' if n != 1 else ''} to compare "
                                "with: too small to say what a copy is; give a folder of at least 2 different "
                                "photos (--images)")
            m = median_nn(v)
            if not m > 0:
                raise UserError(f"the collection {self.name} is degenerate: most of its photos are identical, so "
                                "no distance says what a copy is; give a folder of different photos (--images)")
            self._medians[space] = m
        return self._medians[space]

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
                      progress: Optional[Callable[[int, int], None]] = None,
                      say: Optional[Callable[[str], None]] = None) -> Collection:
    """A user's folder in a feature space, indexed once into cache_root/neighbours/ and reused while the folder's
    files (names, sizes, times) stay the same. A damaged index is set aside (never deleted) and built again."""
    from .dataset_index import folder_identity

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"photo folder not found: {folder}")
    files = _folder_files(folder)
    if not files:
        raise UserError(f"no photos (.jpg, .png, ...) in {folder}")
    if len(files) < 2:  # before any indexing: one photo says nothing about what a copy is
        raise UserError(f"the collection {folder} has 1 photo to compare with: too small to say what a copy is; "
                        "give a folder of at least 2 different photos (--images)")
    ident = hashlib.sha256(f"{folder_identity(folder, files)}|{space}|v{INDEX_VERSION}".encode()).hexdigest()[:20]
    cache = Path(cache_root) / "neighbours" / f"{ident}.npz"
    index = _read_index(cache, say) if cache.is_file() else None
    if index is None:
        index = _build_index(folder, files, space, progress)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".part.npz")
            np.savez(tmp, **index)
            tmp.replace(cache)
        except OSError:
            pass  # a read-only data folder: indexed again next time
    kept = [str(f) for f in index["files"]]
    photos = [{"file": f, "path": str(folder / f)} for f in kept]
    return Collection(str(folder), space, index["features"], photos, None, index["pixels"], np.arange(len(kept)),
                      index["perceptual"], index["structure"])


_INDEX_KEYS = ("files", "features", "pixels", "perceptual", "structure")


def _read_index(cache: Path, say: Optional[Callable[[str], None]]) -> Optional[dict]:
    """The cached index, or None after setting a damaged one aside as <name>.damaged (it is ours: we wrote it)."""
    import zipfile

    try:
        with np.load(cache, allow_pickle=False) as z:
            index = {k: z[k] for k in _INDEX_KEYS}
        if len({len(v) for v in index.values()}) != 1:
            raise ValueError("row counts differ")
        return index
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        aside = cache.with_name(cache.name + ".damaged")
        try:
            cache.replace(aside)
        except OSError:
            pass
        (say or _stderr)(f"the cached photo index {cache} is damaged ({type(exc).__name__}): set aside as "
                         f"{aside.name}; indexing the folder again")
        return None


def _stderr(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def _build_index(folder: Path, files: list[str], space: tuple[str, str],
                 progress: Optional[Callable[[int, int], None]]) -> dict:
    kept, feats, pix, perc, struct = [], [], [], [], []
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
            perc.append(perceptual_vectors(ims))
            struct.append(structure_vectors(ims))
        if progress:
            progress(min(i + step, len(files)), len(files))
    if not kept:
        raise UserError(f"none of the photos in {folder} could be read")
    return {"files": np.array(kept), "features": np.concatenate(feats).astype(np.float16),
            "pixels": np.concatenate(pix).astype(np.float16), "perceptual": np.concatenate(perc).astype(np.float16),
            "structure": np.concatenate(struct).astype(np.float16)}


# --- the check --------------------------------------------------------------------------------------------------

def check(images: Sequence[np.ndarray], coll: Collection, k: int = 5) -> list[dict]:
    """For each picture: its k nearest photos in deep feature space and in pixel space, its novelty in the
    structure and the perceptual spaces, the nearer of them deciding (`novelty`, `verdict`)."""
    med = {space: coll.median(space) for space in DECIDING}  # refuses a degenerate collection first
    feats = embed(images, *coll.space)
    deep = nearest(feats, coll.features, k)
    queries = {"pixel": pixel_vectors(images), "structure": structure_vectors(images),
               "perceptual": perceptual_vectors(images)}
    near = {space: nearest(q, coll.vectors(space), k) for space, q in queries.items()}
    out = []
    for i in range(len(images)):
        by_space = {space: round(near[space][i][0][1] / med[space], 4) for space in med}
        decided = min(by_space, key=by_space.get)
        nov = by_space[decided]
        out.append({
            "collection": coll.name, "space": ":".join(coll.space), "photos": len(coll.photos),
            "novelty": nov, "verdict": verdict(nov), "decided_by": decided,
            "nearest": _row(coll, int(coll.pixel_rows[near[decided][i][0][0]]), near[decided][i][0][1])["file"],
            "novelty_structure": by_space["structure"], "novelty_perceptual": by_space["perceptual"],
            "median_nn_distance": {s: round(m, 4) for s, m in med.items()},
            "deep": [_row(coll, j, d) for j, d in deep[i]],
            "pixel": [_row(coll, int(coll.pixel_rows[j]), d) for j, d in near["pixel"][i]],
            "pixel_photos": int(len(coll.pixel_rows)),
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
    from . import priors as P

    if prior_name and prior_name not in ("pixel", "maco") and prior_name not in P.all_specs():
        raise UserError(f"unknown prior {prior_name!r}; priors: {', '.join(P.all_specs())}, pixel, maco")
    space = space_for(prior_name)
    if images:
        return folder_collection(Path(images), space, cache_root, progress)
    coll = shipped()
    if coll.space != space:
        raise UserError(f"the shipped photos are indexed in {':'.join(coll.space)}, but prior {prior_name} needs "
                        f"{':'.join(space)}: give a photo folder with --images (indexed once, then reused)")
    return coll
