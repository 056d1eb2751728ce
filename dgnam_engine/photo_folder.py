"""A folder of the user's photos, listed for indexing: one clear line for a folder that cannot be used, and a note
(not a failure) for single files that cannot be, so one odd name never blocks the whole folder."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from .errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def _utf8(name: str) -> bool:
    """Names are stored in SQLite as text; a name with bytes that are not UTF-8 (surrogates here) cannot be."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def resolve(folder: Path) -> Path:
    """The folder's absolute path; UserError in one line for a link loop, a missing folder or an unusable name."""
    try:
        path = Path(folder).expanduser().resolve(strict=True)
    except FileNotFoundError:
        raise UserError(f"photo folder not found: {folder}") from None
    except (RuntimeError, OSError) as exc:  # Python raises RuntimeError for a symlink loop
        reason = "a symbolic link loop" if "loop" in str(exc).lower() or getattr(exc, "errno", 0) == 40 \
            else getattr(exc, "strerror", None) or str(exc)
        raise UserError(f"cannot use the photo folder {folder}: {reason}") from None
    if not path.is_dir():
        raise UserError(f"photo folder not found: {folder} is not a folder")
    if not _utf8(str(path)):
        raise UserError(f"the photo folder's path {ascii(os.fsencode(path))} is not valid UTF-8; rename it")
    return path


def list_photos(folder: Path) -> list[str]:
    """Image files under `folder` (recursively, not following links to folders, as Path.rglob), as sorted relative
    paths. A file whose name is not UTF-8 or that is not a regular file (a link to a device, say) is skipped with a
    note on stderr."""
    root = resolve(folder)
    out: list[str] = []
    odd_names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            full = os.path.join(dirpath, name)
            try:
                regular = stat.S_ISREG(os.stat(full).st_mode)
            except OSError:  # a dangling link or a link loop
                regular = False
            if not regular:
                continue
            rel = os.path.relpath(full, root)
            if not _utf8(rel):
                odd_names.append(rel)
                continue
            out.append(rel)
    if odd_names:
        shown = ", ".join(ascii(os.fsencode(n)) for n in odd_names[:3]) + (" ..." if len(odd_names) > 3 else "")
        print(f"note: skipped {len(odd_names)} photo(s) whose names are not valid UTF-8: {shown}; rename them to "
              "index them", file=sys.stderr)
    if not out:
        raise UserError(f"no photos (jpg, png, ...) in {folder}")
    return sorted(out)
