"""Reading a user's photo (a file or uploaded bytes) safely: one clear line for anything that is not a usable image,
and nothing read past sensible limits (file size, pixel count: a small PNG can decode to gigabytes)."""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UserError

MAX_BYTES = 30 * 1024 * 1024  # a large camera JPEG is under 15 MB
MAX_PIXELS = 50_000_000  # 50 megapixels: above any camera; decompression bombs claim far more


def read_photo(source: str | os.PathLike | bytes, name: str | None = None) -> np.ndarray:
    """An RGB uint8 array (H, W, 3) from a file path or the bytes of an upload; UserError for anything else."""
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), name or "the uploaded file"
    else:
        path = Path(source).expanduser()
        label = name or str(path)
        if not path.is_file():
            raise UserError(f"photo not found: {path}")
        if path.stat().st_size > MAX_BYTES:
            raise UserError(f"{label} is larger than {MAX_BYTES // 2**20} MB; use a smaller photo")
        data = path.read_bytes()
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
                rgb = im.convert("RGB")
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
