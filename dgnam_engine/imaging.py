"""Result images as PNGs, written atomically, so an interrupted run never leaves a half-written file.

A picture is written to a temporary name of this project's own (`.NAME.dgnam-PID-HEX.part`, unique per write) and
renamed over the target; that one temporary file is removed by its exact name if the write fails. Nothing else in
the folder is ever looked at or removed: other programs keep their `*.part` files there (browser downloads).
"""
from __future__ import annotations

import io
import os
import stat
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import UserError


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def temp_name(path: Path) -> Path:
    """The temporary file a write of `path` goes through: unique to this write, so it never names a file of anyone
    else (or of another write in progress)."""
    return path.with_name(f".{path.name}.dgnam-{os.getpid()}-{uuid.uuid4().hex}.part")


def output_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be an output file we replace (a device, a FIFO, a folder, a link...), or None when it is a
    regular file or a new path. Renaming over a special file would replace it (as root: /dev/null itself)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None  # a new path (whether its folder can be made is checked where it is written)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return None
    kinds = [(stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return f"is {kind}, not a regular file"


def check_output_file(path: str | os.PathLike, what: str = "--out") -> None:
    """UserError in one line unless `path` is a regular file or a new path."""
    why = output_problem(path)
    if why is not None:
        raise UserError(f"{what} {path} {why}: give a new file name or a regular file to replace")


def write_atomic(data: bytes, path: str | os.PathLike) -> Path:
    """Write `data` to `path` through this write's own temporary file; refuses a target that is not a regular file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_output_file(path, "the output file")
    tmp = temp_name(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no partial file behind
    return path


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    return write_atomic(png_bytes(image), path)
