"""Training data for priors: photos -> a fixed set of augmented crops -> encoder codes, cached on disk.

On a CPU the encoder pass is the expensive part, so it runs once per (photos, crops, encoder layer) and training
only reads the cache. The crops are fed to the encoder exactly as DGN-AM will feed it the generator's output
(`Target.preprocess` of a generator-convention image, which resizes 128 -> 224 for Lite0).
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image, ImageOps

from ..convention import uint8_to_gen
from ..errors import UserError
from ..targets import Target

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"no images (jpg, png, ...) in {folder}")
    return files


def split_heldout(files: list[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """A stable split by file name (not by position), so adding photos does not reshuffle the held-out set."""
    if fraction <= 0:
        return files, []
    rank = {f: zlib.crc32(f.name.encode()) % 1000 for f in files}
    held = [f for f in files if rank[f] < fraction * 1000]
    if not held and len(files) > 1:  # a tiny folder: still hold one photo out
        held = [min(files, key=rank.get)]
    if len(held) == len(files):  # and keep at least one for training
        held = held[:-1]
    keep = set(held)
    return [f for f in files if f not in keep], held


def _load_rgb(path: Path) -> Image.Image:
    try:
        im = Image.open(path)
        im = ImageOps.exif_transpose(im)
        return im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None


def random_crops(path: Path, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """n random square crops (side 60-100 % of the short side), random flips, resized to size: (n,size,size,3)."""
    im = _load_rgb(path)
    w, h = im.size
    short = min(w, h)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        side = int(short * rng.uniform(0.6, 1.0))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = im.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.LANCZOS)
        if rng.random() < 0.5:
            crop = ImageOps.mirror(crop)
        out[i] = np.asarray(crop)
    return out


def centre_crop(path: Path, size: int) -> np.ndarray:
    im = _load_rgb(path)
    w, h = im.size
    s = min(w, h)
    x0, y0 = (w - s) // 2, (h - s) // 2
    return np.asarray(im.crop((x0, y0, x0 + s, y0 + s)).resize((size, size), Image.LANCZOS))


def to_gen(rgb_u8: torch.Tensor) -> torch.Tensor:
    """(B,H,W,3) uint8 RGB -> generator convention (B,3,H,W): BGR, mean-subtracted, 0-255."""
    return uint8_to_gen(rgb_u8)


@torch.no_grad()
def encode(target: Target, layer_name: str, rgb_u8: np.ndarray, batch: int = 32,
           progress: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
    """Codes E(preprocess(photo)) for uint8 RGB crops, float32 on the CPU."""
    layer = target.layer(layer_name)
    outs = []
    for i in range(0, len(rgb_u8), batch):
        x = to_gen(torch.from_numpy(rgb_u8[i:i + batch])).to(target.device)
        outs.append(target.forward_to(target.preprocess(x), layer).float().cpu())
        if progress:
            progress(min(i + batch, len(rgb_u8)), len(rgb_u8))
    return torch.cat(outs)


@dataclass
class Dataset:
    crops: np.ndarray  # (N,S,S,3) uint8 RGB training crops
    codes: torch.Tensor  # (N,*code_shape) float32
    heldout: np.ndarray  # (M,S,S,3) uint8 centre crops of held-out photos
    heldout_codes: torch.Tensor
    train_files: list[str]
    heldout_files: list[str]


def _key(parts: dict) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def prepare(images: str | os.PathLike, target: Target, layer: str, size: int, crops_per_image: int,
            heldout_fraction: float, seed: int, cache_dir: Path, log: Callable[[str], None] = print) -> Dataset:
    """Crops and codes, from the cache when the same photos, settings and encoder layer were prepared before."""
    files = list_images(images)
    train, held = split_heldout(files, heldout_fraction)
    stamp = [(str(f.relative_to(Path(images))), f.stat().st_size, int(f.stat().st_mtime)) for f in files]
    crop_key = _key({"files": stamp, "size": size, "n": crops_per_image, "held": heldout_fraction, "seed": seed})
    code_key = _key({"crops": crop_key, "encoder": target.name, "weights": target.weights_path, "layer": layer})
    cache_dir.mkdir(parents=True, exist_ok=True)
    crop_file, code_file = cache_dir / f"crops-{crop_key}.pt", cache_dir / f"codes-{code_key}.pt"
    if crop_file.is_file():
        c = torch.load(crop_file, weights_only=True)
        crops, heldout = c["crops"].numpy(), c["heldout"].numpy()
        log(f"crops: {len(crops)} training crops, {len(heldout)} held-out photos (cached)")
    else:
        rng = np.random.default_rng(seed)
        crops = np.concatenate([random_crops(f, crops_per_image, size, rng) for f in train])
        heldout = (np.stack([centre_crop(f, size) for f in held]) if held
                   else np.empty((0, size, size, 3), np.uint8))
        _save_atomic({"crops": torch.from_numpy(crops), "heldout": torch.from_numpy(heldout)}, crop_file)
        log(f"crops: {len(crops)} training crops from {len(train)} photos, {len(heldout)} held-out photos")
    if code_file.is_file():
        c = torch.load(code_file, weights_only=True)
        codes, held_codes = c["codes"], c["heldout"]
        log(f"codes: {target.name}:{layer} {tuple(codes.shape[1:])} (cached)")
    else:
        def progress(done, total):
            if done == total or done % 512 < 32:
                log(f"encoding {done}/{total} crops at {target.name}:{layer}")
        codes = encode(target, layer, crops, progress=progress)
        held_codes = encode(target, layer, heldout) if len(heldout) else codes[:0]
        _save_atomic({"codes": codes.half(), "heldout": held_codes.half()}, code_file)
        codes, held_codes = codes.half(), held_codes.half()  # the same precision whether cached or not
    return Dataset(crops, codes.float(), heldout, held_codes.float(), [f.name for f in train],
                   [f.name for f in held])
