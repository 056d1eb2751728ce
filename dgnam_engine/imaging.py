"""Result images: RGB [0,1] tensors to uint8 arrays, and PNGs written atomically, so an interrupted run never
leaves a half-written file."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image


def to_uint8(images) -> list[np.ndarray]:
    """(B,3,H,W) RGB in [0,1] (a CPU tensor) -> B arrays of (H,W,3) uint8."""
    return [(im.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8) for im in images]


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        tmp.write_bytes(png_bytes(image))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no partial file behind
    return path
