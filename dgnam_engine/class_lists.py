"""Class names of the networks' output layers: ImageNet-1k (torchvision's metadata), the scene lists of Places365
and Places205 (shipped in assets/categories, see its README), and a user's own names file.

A class is found by name ignoring case, with spaces and underscores alike (`art_gallery`, `art gallery`), so one
name moves between lists that spell it the same way (Places205 alley 2 is Places365 alley 4).
"""
from __future__ import annotations

import difflib
import errno
import os
import stat
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

from .assets import ASSETS
from .errors import UserError
from .numbers import is_whole

CATEGORIES = ASSETS / "categories"


def imagenet() -> tuple[str, ...]:
    from .imagenet import class_names

    return class_names()


@lru_cache(maxsize=1)
def places365() -> tuple[str, ...]:
    """`/a/apartment_building/outdoor 8` -> `apartment_building/outdoor`: the path after the letter folder."""
    return _indexed(CATEGORIES / "places365_categories.txt", lambda name: name.split("/", 2)[2])


@lru_cache(maxsize=1)
def places205() -> tuple[str, ...]:
    return _indexed(CATEGORIES / "places205_categories.txt", lambda name: name)


def _indexed(path: Path, clean) -> tuple[str, ...]:
    """A `name index` list, checked to hold every index once, in order."""
    rows = [line.rsplit(None, 1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if [int(i) for _, i in rows] != list(range(len(rows))):
        raise RuntimeError(f"{path}: the indices are not 0..{len(rows) - 1} in order")
    return tuple(clean(name) for name, _ in rows)


MAX_CLASSES = 100_000  # far above any classifier's outputs (ImageNet-21k has 21841); the same bound as --num-classes
MAX_NAMES_BYTES = 8 << 20  # 100000 names of 80 characters; a file beyond it is not a class list


def read_names_file(path: str | Path, shown: Optional[Path] = None) -> tuple[str, ...]:
    """A user's class names: one per line (blank lines skipped); `name index` lines as in the Places lists are
    read by their index. Only a regular file of bounded size and line count is read (a path typed on Setup may
    name a device or a pipe); UserError in one line for anything else, and for names no class can have
    (control characters, the same name twice). `shown`: the name the user knows the file by (`path` may be the
    copy being checked)."""
    text = _bounded_text(Path(path).expanduser(), shown)
    p = shown or Path(path).expanduser()
    lines = [s.strip() for s in text.splitlines() if s.strip()]
    if not lines:
        raise UserError(f"the class names file {p} is empty: write one class name per line")
    if len(lines) > MAX_CLASSES:
        raise UserError(f"the class names file {p} has {len(lines)} names, more than the {MAX_CLASSES} a network "
                        f"may have: write one class name per line")
    parts = [s.rsplit(None, 1) for s in lines]
    if all(len(x) == 2 and is_whole(x[1]) for x in parts) and [int(x[1]) for x in parts] == list(range(len(parts))):
        lines = [x[0] for x in parts]
    seen: dict[str, int] = {}
    for i, name in enumerate(lines, 1):
        bad = next((ch for ch in name if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")), None)
        if bad is not None:
            raise UserError(f"the class names file {p}: name {i} ({name[:40]!r}) holds the control character "
                            f"{bad!r}: write one plain name per line")
        first = seen.setdefault(_key(name), i)
        if first != i:
            raise UserError(f"the class names file {p} names {name!r} twice (names {first} and {i}): each class "
                            f"needs a name of its own")
    return tuple(lines)


def _bounded_text(path: Path, shown: Optional[Path]) -> str:
    """The text of `p`, opened without blocking (a pipe would wait for a writer for ever) and read only when it
    is a regular file within MAX_NAMES_BYTES; a BOM is dropped."""
    p = shown or path
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        why = "file not found" if exc.errno == errno.ENOENT else exc.strerror or exc
        raise UserError(f"cannot read the class names file {p}: {why}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"the class names file {p} is not a regular file (a folder, device or pipe): give a "
                            f"text file with one class name per line")
        if st.st_size > MAX_NAMES_BYTES:
            raise UserError(f"the class names file {p} is {st.st_size / 1e6:.1f} MB, more than a class list's "
                            f"{MAX_NAMES_BYTES / 1e6:.0f} MB: give a text file with one class name per line")
        data = f.read(MAX_NAMES_BYTES + 1)  # bounded even if the file grows after the check
    if len(data) > MAX_NAMES_BYTES:
        raise UserError(f"the class names file {p} grew past {MAX_NAMES_BYTES / 1e6:.0f} MB while it was read")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"cannot read the class names file {p}: it is not UTF-8 text") from None


def _key(name: str) -> str:
    return name.replace("_", " ").strip().lower()


def find(names: Sequence[str], text: str) -> Optional[int]:
    """The index of the class called `text` (case, spaces and underscores aside), or None."""
    wanted = _key(text)
    return next((i for i, n in enumerate(names) if _key(n) == wanted), None)


def unit_by_name(names: Sequence[str], text: str, what: str) -> int:
    """A unit number from a number or a class name of `names`; UserError naming `what` (the network)."""
    t = text.strip()
    if is_whole(t):
        return int(t)
    i = find(names, t)
    if i is None:
        close = suggestions(names, t)
        hint = f"; did you mean {', '.join(close)}?" if close else " (spaces as _, or a unit number)"
        raise UserError(f"{what} has no class named {t!r}{hint}")
    return i


def suggestions(names: Sequence[str], text: str, n: int = 5) -> list[str]:
    """Names that `text` may have meant: those containing it (`terrier`), then those spelt alike (`zebraa`)."""
    wanted = _key(text)
    keys = {_key(x): x for x in names}
    close = [x for k, x in keys.items() if wanted and wanted in k][:n]
    close += [keys[k] for k in difflib.get_close_matches(wanted, list(keys), n=n, cutoff=0.75)
              if keys[k] not in close]
    return close[:n]
