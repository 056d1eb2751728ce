"""Numbers typed by people (command-line options, dashboard boxes, link parameters), read one way everywhere.

Only ASCII digits count: `str.isdigit` also accepts "²" (which `int` refuses) and `int` accepts "٣" and "1_0",
none of which anybody means as a unit number. Ranges are checked before they are built, so "0-100000000000"
is refused in one line instead of filling the memory.
"""
from __future__ import annotations

import math
import re
from typing import Optional

from .errors import UserError

_WHOLE = re.compile(r"[0-9]+")
_SIGNED = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
# No layer has anywhere near this many units; it bounds a list typed without knowing the layer (visualize checks
# each unit against the layer once the model is loaded).
MAX_UNITS = 100_000
MAX_SEED = 2**32 - 1  # numpy's RandomState, which draws the start codes as the original does, takes 0 .. 2^32-1


class NumberError(UserError, ValueError):
    """A typed number that cannot be used: a UserError (one line) for the CLI; `reason` ("format", "empty",
    "reversed", "range" or "count") and `part` (the text at fault) let the dashboard say it in its own words."""

    def __init__(self, message: str, reason: str = "format", part: str = "", value: Optional[int] = None):
        super().__init__(message)
        self.reason, self.part, self.value = reason, part, value


def is_whole(text: str) -> bool:
    """Whether `text` is a whole number written in ASCII digits (no sign, no spaces)."""
    return bool(_WHOLE.fullmatch(text))


def whole(text: str, what: str = "number", *, low: int = 0, high: Optional[int] = None) -> int:
    """A whole number from low to high written in ASCII digits (a minus sign is read, to say it is too low);
    NumberError naming `what` otherwise."""
    t = text.strip()
    if not _SIGNED.fullmatch(t):
        raise NumberError(f"bad {what} {text!r}: write a whole number with the digits 0-9", "format", text)
    n = int(t)
    if n < low or (high is not None and n > high):
        span = f"from {low} to {high}" if high is not None else f"of {low} or more"
        raise NumberError(f"{what} {n} is out of range: use a whole number {span}", "range", t, n)
    return n


def decimal(text: str, what: str = "number") -> float:
    """A finite, non-negative decimal number (0.5, 3, .25, 1e-10) written in ASCII digits."""
    t = text.strip()
    if not _DECIMAL.fullmatch(t) or not math.isfinite(float(t)):
        raise NumberError(f"bad {what} {text!r}: write a number like 0.5 or 1e-3 with the digits 0-9", "format",
                          text)
    return float(t)


def unit_list(text: str, n_units: Optional[int] = None) -> list[int]:
    """Units typed as "967", "1,2,3" or "10-20" (commas or semicolons between parts), in the order given, each
    once. With `n_units` every unit is checked against the layer (0 to n_units-1); without it, against MAX_UNITS.
    Every range is checked before it is built."""
    limit = n_units if n_units is not None else MAX_UNITS
    units: list[int] = []
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        lo, sep, hi = (p.strip() for p in part.partition("-"))
        if not (is_whole(lo) and (not sep or is_whole(hi))):
            raise NumberError(f"bad unit {part!r}: use numbers like 967 or 1,2,3 or 10-20", "format", part)
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise NumberError(f"the range {part!r} is empty: write the smaller number first ({b}-{a})", "reversed",
                              part)
        if b >= limit:
            raise NumberError(f"unit {b} is out of range (0-{limit - 1})" if n_units is not None else
                              f"unit {b} is out of range: no layer has more than {MAX_UNITS} units", "range", part, b)
        if len(units) + (b - a + 1) > MAX_UNITS:
            raise NumberError(f"more than {MAX_UNITS} units asked for; give fewer", "count", part)
        units.extend(range(a, b + 1))
    if not units:
        raise NumberError("no unit given: use numbers like 967 or 1,2,3 or 10-20", "empty")
    return list(dict.fromkeys(units))


def position(text: str) -> tuple[int, int]:
    """ROW,COL (or N for N,N) in ASCII digits."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (1, 2) or not all(is_whole(p) for p in parts):
        raise NumberError(f"bad position {text!r}: use ROW,COL like 2,5 (or one number N for N,N)")
    return int(parts[0]), int(parts[-1])
