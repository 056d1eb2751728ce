"""What every command shares: the one-line argument errors, the table printer, the argument types that read
numbers (numbers.py) and the option groups several commands take. The commands import this; nothing here
imports a command."""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional

from . import numbers
from .errors import UserError


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        # prog is "dgnam models add": the command is everything after the program's own name
        raise UserError(f"{message} (see `python -m dgnam_engine {' '.join(self.prog.split()[1:])} --help`)"
                        if " " in self.prog else message)


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())


def parse_xy(text: Optional[str]) -> Optional[tuple[int, int]]:
    """`--xy 6` is the square (6, 6), as the original's single xy; `--xy 2,5` is row 2, column 5."""
    if text is None:
        return None
    try:
        return numbers.position(text)
    except numbers.NumberError:
        raise UserError(f"bad --xy {text!r}: use ROW,COL like 2,5 (or one number N for N,N)") from None


def whole_arg(what: str, high: Optional[int] = None, low: int = 0):
    """An argparse type: a whole number in ASCII digits (argparse's `int` takes "٣" and "1_0" too)."""
    def parse(text: str) -> int:
        try:
            return numbers.whole(text, what, low=low, high=high)
        except numbers.NumberError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def decimal_arg(what: str):
    """An argparse type: a finite number >= 0 in ASCII digits (`float` takes "nan", "inf" and "١.٥" too)."""
    def parse(text: str) -> float:
        try:
            return numbers.decimal(text, what)
        except numbers.NumberError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def check_writable(path: Path) -> None:
    """Fail before a long run, not after it: the nearest existing folder above `path` must be a writable folder."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: no permission to write in {parent}")


def rf_path(p: Path) -> Path:
    """Where a picture's receptive-field cut goes: beside it, `<name>_rf.png`."""
    return p.with_name(f"{p.stem}_rf{p.suffix or '.png'}")


def alpha_path(p: Path) -> Path:
    """Where MACO's alpha map goes: beside its picture, `<name>_alpha.png`."""
    return p.with_name(f"{p.stem}_alpha{p.suffix or '.png'}")


# ----- option groups shared by several commands -----

def add_model_options(s, device: str = "cpu") -> None:
    """--model, --weights, --random-weights and --device (the target network and where it runs)."""
    s.add_argument("--model", default=None,
                   help="default: caffenet when it and the fc6 prior are present, else efficientnet_lite0")
    s.add_argument("--weights", default=None, help="weights file for the model")
    s.add_argument("--random-weights", action="store_true", help="random model weights (for testing)")
    s.add_argument("--device", default=device, help="cpu, cuda or auto")


def add_prior_options(s) -> None:
    s.add_argument("--prior", default=None, help="default: fc6 if present, else the demo prior")
    s.add_argument("--prior-file", default=None, help="weights file for the prior")


def add_store_option(s) -> None:
    s.add_argument("--store", default=None, help="results folder (default: $DGNAM_DATA_DIR or the user data dir)")


def add_output_options(s, quiet: Optional[str] = None) -> None:
    """--json (one JSON object as the last line) and, with `quiet` (its help), --quiet."""
    s.add_argument("--json", action="store_true", help="print one JSON object (or list) as the last line")
    if quiet is not None:
        s.add_argument("--quiet", action="store_true", help=quiet)
