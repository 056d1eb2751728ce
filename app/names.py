"""How a layer's units are named and found by typed text, from the layer's size and class names alone: no engine
(Browse's first screen names its grid with these before the network has loaded)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from dgnam_engine import numbers


def find_in(names: Sequence[str], text: str) -> list[int]:
    """The classes one typed name stands for: an exact name (or class number) first, so "espresso" is espresso
    (967) and not also espresso maker; else every class whose name contains the text. Spaces and underscores
    alike: "art gallery" is art_gallery."""
    names = [n.lower().replace("_", " ") for n in names]
    t = text.strip().lower().replace("_", " ")
    if not t:
        return []
    if numbers.is_whole(t):
        return [int(t)] if int(t) < len(names) else []
    exact = [i for i, n in enumerate(names) if n == t or f"{n} ({i})" == t]
    if exact:
        return exact
    return [i for i, n in enumerate(names) if t in n]


@dataclass(frozen=True)
class LayerNames:
    """What a grid needs to know of a layer: its size, and its class names when its units are classes."""
    model: str
    layer: str
    units: int
    classes: Optional[tuple[str, ...]] = None

    def unit_name(self, unit: int) -> str:
        """'espresso (967)' for classes, 'unit 12' otherwise."""
        return f"{self.classes[unit]} ({unit})" if self.classes else f"unit {unit}"

    def find(self, text: str) -> list[int]:
        return find_in(self.classes, text) if self.classes else []
