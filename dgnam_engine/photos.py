"""Reading a user's photo (a file or uploaded bytes) safely: one clear line for anything that is not a usable image,
and nothing read past sensible limits (file size, pixel count: a small PNG can decode to gigabytes)."""
from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UserError

MAX_BYTES = 30 * 1024 * 1024  # a large camera JPEG is under 15 MB
MAX_PIXELS = 50_000_000  # 50 megapixels: above any camera; decompression bombs claim far more


def check_photo_file(path: Path, label: str | None = None) -> os.stat_result:
    """The photo's stat if `path` is a regular file (followed through links); UserError otherwise, without opening
    it: a device (/dev/zero), a pipe or a socket would be read forever or block."""
    label = label or str(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"photo not found: {path}") from None
    except OSError as exc:  # a link loop, a folder without permission, ...
        raise UserError(f"cannot read the photo {label}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, pipe or socket"
        raise UserError(f"{label} is not a regular file ({kind}); give a photo file")
    return st


def _read_file(path: Path, label: str) -> bytes:
    check_photo_file(path, label)
    try:
        # O_NONBLOCK: were the file swapped for a pipe since the check, opening it must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UserError(f"cannot read the photo {label}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{label} is not a regular file; give a photo file")
        if st.st_size > MAX_BYTES:
            raise UserError(f"{label} is larger than {MAX_BYTES // 2**20} MB; use a smaller photo")
        return f.read(MAX_BYTES + 1)


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, 8 bits a channel. PIL's convert clips 16-bit and 32-bit greyscale to 255 (a 16-bit photo turns white):
    scale those by their range instead, 16-bit by 0-65535, wider kinds by the values they hold."""
    if im.mode.startswith("I;16"):
        grey = np.asarray(im, dtype=np.float64) / 257.0
    elif im.mode in ("I", "F"):
        grey = np.asarray(im, dtype=np.float64)
        lo, hi = float(np.nanmin(grey)), float(np.nanmax(grey))
        if lo < 0 or hi > 65535 or not np.isfinite(lo + hi):
            grey = (np.nan_to_num(grey, nan=lo) - lo) * (255.0 / max(hi - lo, 1e-12))
        elif hi > 255:
            grey = grey / 257.0
    else:
        return im.convert("RGB")
    return Image.fromarray(np.clip(grey + 0.5, 0, 255).astype(np.uint8)).convert("RGB")


def read_photo(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """An RGB uint8 array (H, W, 3) from a file path or the bytes of an upload; UserError for anything else."""
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), name or "the uploaded file"
    else:
        path = Path(source).expanduser()
        label = name or str(path)
        data = _read_file(path, label)
    if len(data) > MAX_BYTES:
        raise UserError(f"{label} is larger than {MAX_BYTES // 2**20} MB; use a smaller photo")
    if not data:
        raise UserError(f"{label} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if w * h > MAX_PIXELS:
                    raise UserError(f"{label} claims {w}x{h} pixels, more than any photo; it was not opened")
                im.load()  # decode now: a truncated file fails here, not later
                rgb = _to_rgb(im)
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{label} claims more pixels than any photo; it was not opened") from None
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's ways of saying "not an image" or "cut short"
        reason = "it is cut short or damaged" if "truncated" in str(exc).lower() else "not an image PIL can read"
        raise UserError(f"{label} cannot be used as a photo: {reason}") from None
    if min(rgb.size) < 8:
        raise UserError(f"{label} is only {rgb.size[0]}x{rgb.size[1]} pixels; use a real photo")
    return np.array(rgb)


def square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The centre square of a photo resized to size x size (how priors were trained and how models see it)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    im = Image.fromarray(rgb[y0:y0 + s, x0:x0 + s])
    return np.array(im.resize((size, size), Image.LANCZOS))
