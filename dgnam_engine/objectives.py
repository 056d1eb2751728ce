"""What is maximised: one unit, a channel at (row, col), or a weighted sum of such terms on one or several layers.

Text syntax (`visualize --objective`), terms joined by + and -, each with an optional weight:

    bee + 0.5*daisy            two class units of the output layer, by name or number (309 + 0.5*985)
    309 - 0.5*985              "A minus B" (a minus between terms has a space before it)
    blocks.5:7@2,5 + blocks.5:9 channel 7 of blocks.5 at row 2, column 5, plus channel 9 at the centre

A class name with spaces is written with underscores (`espresso_maker`). The value of an objective is the weighted
sum of its terms' activations; each term's own activation is kept, so a card can show every unit.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from . import class_lists, numbers
from .errors import UserError
from .targets import LayerInfo, Target


@dataclass(frozen=True)
class Term:
    unit: int
    weight: float = 1.0
    layer: Optional[str] = None  # None: the model's output layer
    position: Optional[tuple[int, int]] = None  # conv layers; None: the centre

    def describe(self, target: Target) -> str:
        info = target.layer(self.layer)
        where = f" at {self.position[0]},{self.position[1]}" if self.position else ""
        return f"{target.unit_label(info, self.unit)}{where}"


# Numbers in ASCII digits only ([0-9], not \d, which takes any script's digits); a unit may be a class name.
_TERM = re.compile(r"""^\s*(?:(?P<w>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*[*x]\s*)?  # weight, then * or x
                       (?:(?P<layer>[A-Za-z_][\w./]*)\s*:\s*)?             # layer:
                       (?P<unit>[\w'/-]+?)                                  # unit number or class name
                       (?:\s*@\s*(?P<r>[0-9]+)\s*,\s*(?P<c>[0-9]+))?\s*$""", re.X)
MAX_WEIGHT = 1e6  # far above any useful weight; larger ones only overflow the sum


def _unit(text: str, layer: Optional[str], names: Optional[Sequence[str]]) -> int:
    if numbers.is_whole(text):
        return int(text)
    if any(ch.isdigit() for ch in text) and not any(ch.isalpha() for ch in text):
        raise UserError(f"unit {text!r}: write unit numbers with the digits 0-9")
    if layer is not None:
        raise UserError(f"unit {text!r} of layer {layer}: hidden units are numbers")
    names = class_lists.imagenet() if names is None else names
    i = class_lists.find(names, text)
    if i is None:
        close = class_lists.suggestions(names, text)
        hint = f"; did you mean {', '.join(close)}?" if close else ": use a class name (spaces as _) or a unit number"
        raise UserError(f"no class named {text!r}{hint}")
    return i


def _weight(text: str) -> float:
    """A term's weight: finite and above 0 (a zero term does nothing; the sign goes before the term)."""
    w = float(text)
    if not (math.isfinite(w) and 0 < w <= MAX_WEIGHT):
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise UserError(f"the weight {shown} of a term in the objective must be above 0 and at most {MAX_WEIGHT:g}")
    return w


def parse(text: str, names: Optional[Sequence[str]] = None) -> list[Term]:
    """Terms of an objective written as above; UserError naming the part that could not be read. Class names are
    looked up in `names` (the network's output classes; default ImageNet's)."""
    src = text.strip()
    if not src:
        raise UserError("the objective is empty: write units joined by + or -, e.g. bee + 0.5*daisy")
    # "+" always separates terms; "-" only at the start or after a space, since class names contain hyphens
    # ("black-and-tan coonhound" is black-and-tan_coonhound).
    parts = re.split(r"(\+|(?:^|(?<=\s))-)", src)
    signs, chunks = ["+"], [parts[0]]
    for i in range(1, len(parts), 2):
        signs.append(parts[i])
        chunks.append(parts[i + 1])
    if not chunks[0].strip() and len(chunks) > 1:  # a leading sign: "-bee + daisy"
        signs, chunks = signs[1:], chunks[1:]
    terms = []
    for sign, chunk in zip(signs, chunks):
        m = _TERM.match(chunk)
        if m is None:
            raise UserError(f"cannot read {chunk!r} in the objective {text!r}: write terms like 0.5*bee, 309 or "
                            "blocks.5:7@2,5")
        w = _weight(m["w"]) if m["w"] else 1.0
        pos = (int(m["r"]), int(m["c"])) if m["r"] is not None else None
        terms.append(Term(_unit(m["unit"], m["layer"], names), -w if sign == "-" else w, m["layer"], pos))
    return terms


def validate(target: Target, terms: list[Term]) -> None:
    for t in terms:
        info = target.layer(t.layer)
        if t.position is not None and info.kind != "conv":
            raise UserError(f"a position is for convolutional layers; {info.name} of {target.name} has none")
        target.check_unit(info, t.unit, t.position)
    if len({(t.layer, t.unit, t.position) for t in terms}) != len(terms):
        raise UserError("the objective names the same unit twice; add the weights into one term")


def term_activations(target: Target, x_gen: torch.Tensor, terms: list[Term]) -> torch.Tensor:
    """(B, T): every term's activation for every image, one forward pass per distinct layer."""
    by_layer: dict[Optional[str], list[int]] = {}
    for j, t in enumerate(terms):
        by_layer.setdefault(t.layer, []).append(j)
    x_model = target.preprocess(x_gen)
    cols: dict[int, torch.Tensor] = {}
    for layer_name, idx in by_layer.items():
        info: LayerInfo = target.layer(layer_name)
        out = target.forward_to(x_model, info)
        for j in idx:
            t = terms[j]
            if info.kind == "fc":
                cols[j] = out[:, t.unit]
            elif info.kind == "tokens":
                cols[j] = out[:, :, t.unit].mean(1)
            else:
                r, c = t.position if t.position is not None else info.centre()
                cols[j] = out[:, t.unit, r, c]
    return torch.stack([cols[j] for j in range(len(terms))], 1).float()


def value(target: Target, x_gen: torch.Tensor, terms: list[Term]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) weighted sum and the (B, T) term activations."""
    acts = term_activations(target, x_gen, terms)
    w = acts.new_tensor([t.weight for t in terms])
    return acts @ w, acts


# ----- objectives as the optimisation loop calls them: objective(target, x_gen) -> (B,) ----------------------

@dataclass(frozen=True)
class UnitObjective:
    """Sample b maximises unit units[b] of one layer (at `position`, or the centre, for conv layers): how a batch of
    class units is rendered at once."""

    layer: LayerInfo
    units: torch.Tensor  # (B,) on the target's device
    position: Optional[tuple[int, int]] = None

    def __call__(self, target: Target, x_gen: torch.Tensor) -> torch.Tensor:
        return target.unit_activations(x_gen, self.layer, self.units, self.position)

    def select(self, b: int) -> "UnitObjective":
        return UnitObjective(self.layer, self.units[b:b + 1], self.position)

    def part(self, lo: int, hi: int) -> "UnitObjective":
        """Samples lo..hi-1 (a batch split in halves)."""
        return UnitObjective(self.layer, self.units[lo:hi], self.position)


@dataclass(frozen=True)
class SumObjective:
    """Every sample maximises the same weighted sum of terms (several units, layers or positions)."""

    terms: tuple[Term, ...]

    def __call__(self, target: Target, x_gen: torch.Tensor) -> torch.Tensor:
        return value(target, x_gen, list(self.terms))[0]

    def select(self, b: int) -> "SumObjective":
        return self

    def part(self, lo: int, hi: int) -> "SumObjective":
        return self

    def describe(self, target: Target) -> str:
        parts = []
        for t in self.terms:
            w = f"{abs(t.weight):g}x " if abs(t.weight) != 1 else ""
            parts.append(("- " if t.weight < 0 else "+ ") + w + t.describe(target))
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else text
