"""Class names of the networks' output layers: ImageNet-1k (torchvision's metadata), the scene lists of Places365
and Places205 (shipped in assets/categories, see its README), and a user's own names file.

A class is found by name ignoring case, with spaces and underscores alike (`art_gallery`, `art gallery`), so one
name moves between lists that spell it the same way (Places205 alley 2 is Places365 alley 4).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

from .assets import ASSETS
from .errors import UserError

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


def read_names_file(path: str | Path) -> tuple[str, ...]:
    """A user's class names: one per line (blank lines skipped); `name index` lines as in the Places lists are
    read by their index. UserError in one line for an unreadable file."""
    p = Path(path).expanduser()
    try:
        lines = [s.strip() for s in p.read_text(encoding="utf-8").splitlines() if s.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the class names file {p}: {getattr(exc, 'strerror', None) or exc}") from None
    if not lines:
        raise UserError(f"the class names file {p} is empty: write one class name per line")
    parts = [s.rsplit(None, 1) for s in lines]
    if all(len(x) == 2 and x[1].isdigit() for x in parts) and [int(x[1]) for x in parts] == list(range(len(parts))):
        lines = [x[0] for x in parts]
    return tuple(lines)


def _key(name: str) -> str:
    return name.replace("_", " ").strip().lower()


def find(names: Sequence[str], text: str) -> Optional[int]:
    """The index of the class called `text` (case, spaces and underscores aside), or None."""
    wanted = _key(text)
    return next((i for i, n in enumerate(names) if _key(n) == wanted), None)


def unit_by_name(names: Sequence[str], text: str, what: str) -> int:
    """A unit number from a number or a class name of `names`; UserError naming `what` (the network)."""
    t = text.strip()
    if t.isdigit():
        return int(t)
    i = find(names, t)
    if i is None:
        close = [n for n in names if _key(t) in _key(n)][:5]
        hint = f"; did you mean {', '.join(close)}?" if close else " (spaces as _, or a unit number)"
        raise UserError(f"{what} has no class named {t!r}{hint}")
    return i
