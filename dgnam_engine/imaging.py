"""Result images as PNGs, written atomically, so an interrupted run never leaves a half-written file."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_parts(path.parent)  # left by a write that was killed
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_bytes(png_bytes(image))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no partial file behind
    return path


STALE_PART_S = 3600.0  # a part file whose writer cannot be told is taken for abandoned after this long


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Delete the `.part` files of writes that were killed: those naming a process that is gone (".NAME.PID.part"
    or ".NAME.PID.HEX.part"), and any other part file older than STALE_PART_S. Returns what was removed."""
    removed = []
    try:
        parts = list(Path(folder).glob("*.part")) + list(Path(folder).glob(".*.part"))
    except OSError:
        return removed
    now = time.time()
    for p in set(parts):
        fields = p.name.split(".")
        pid = next((int(f) for f in reversed(fields[:-1]) if f.isdigit()), None)
        try:
            stale = (pid is not None and not _alive(pid)) or now - p.stat().st_mtime > STALE_PART_S
            if stale:
                p.unlink()
                removed.append(p)
        except OSError:
            continue
    return removed
