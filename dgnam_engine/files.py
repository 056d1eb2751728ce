"""Putting a finished file in place, below everything that writes one (weights, Hub downloads, prior files)."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import UserError


def publish(tmp: Path, dest: Path) -> None:
    """Move a finished file into place with the usual permissions: mkstemp and safetensors create files only
    their owner can read, which would hide shared caches and priors from other users of the machine."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, dest)


def _umask() -> int:
    try:  # Linux reports it without changing it; os.umask() sets it, racing other threads for a moment
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """`path` (~ expanded) when it is a regular file (links followed); UserError in one line saying which it is
    not: missing, or a folder, device, pipe or socket (read whole, those grow for ever or wait for a writer)."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UserError(f"{what} not found: {p}") from None
    except OSError as exc:
        raise UserError(f"cannot read the {what} {p}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a device, pipe or socket"
        raise UserError(f"the {what} {p} is not a regular file ({kind}): give the path of a file")
    return p


def copy_regular(src: Path, dest: Path, what: str = "file") -> None:
    """Copy `src` to `dest` (created), reading only a regular file and no more than the size it had when opened:
    a file swapped for a device or a pipe after a check is refused, not read for ever. What is checked afterwards
    is this copy, so no later swap of `src` reaches what is kept."""
    try:
        fd = os.open(src, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UserError(f"cannot read the {what} {src}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"the {what} {src} is not a regular file (a folder, device or pipe): give the path of "
                            f"a file")
        left = st.st_size
        with open(dest, "wb") as out:
            while left > 0:
                chunk = f.read(min(left, 1 << 22))
                if not chunk:
                    break
                out.write(chunk)
                left -= len(chunk)
