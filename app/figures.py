"""Numbers as a person reads them in captions and tables."""
from __future__ import annotations


def fixed(x: float, digits: int = 1) -> str:
    """`x` with `digits` decimals; a value that rounds to zero reads 0.0, never "-0.0"."""
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s
