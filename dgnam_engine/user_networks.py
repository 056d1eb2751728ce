"""Networks a user adds from a file (`models add`): one folder each under <data folder>/networks/<name>/ holding
`network.json` (what to build and how it reads pictures), a copy of the weights and, optionally, the class names.

Plain data only: targets.py turns an entry into a network spec. Every entry is checked where it is read; a damaged
one is skipped with a one-line warning (once per version of the file), so listing never fails because of it.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

from .errors import UserError
from .store import default_root

log = logging.getLogger(__name__)
ENTRY_FILE = "network.json"
NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
ARCH = re.compile(r"torchvision:[A-Za-z0-9_]+|timm:[A-Za-z0-9_.-]+|caffenet")  # fullmatch only


@dataclass(frozen=True)
class Entry:
    name: str
    arch: str  # "torchvision:<name>", "timm:<name>" or "caffenet"
    num_classes: int
    weights: str  # file name inside the entry's folder
    input_size: int
    colour: str  # "rgb" (mean/std below) or "caffe" (BGR minus the ImageNet mean, 0-255)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output_layer: str
    layers: tuple[tuple[str, str], ...]  # (name users call it, module path), probed when it was added
    classes: Optional[str] = None  # file name of the class names inside the entry's folder
    folder: str = ""  # where it lives (not stored)

    @property
    def weights_path(self) -> Path:
        return Path(self.folder) / self.weights

    @property
    def classes_path(self) -> Optional[Path]:
        return Path(self.folder) / self.classes if self.classes else None


def root() -> Path:
    return default_root() / "networks"


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):  # fullmatch: `$` alone lets a name end in a newline
        raise UserError(f"bad network name {name!r}: use lower-case letters, digits, _ . - (up to 64)")


def _three(value, what: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{what} must be three numbers")
    return tuple(float(v) for v in value)


def _from_json(data, folder: Path) -> Entry:
    """An entry from its JSON, checked: ValueError naming the first thing wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    name, arch = data.get("name"), data.get("arch")
    if not isinstance(name, str) or not NAME.fullmatch(name) or name != folder.name:
        raise ValueError(f"its name {name!r} is not the folder's name {folder.name!r}")
    if not isinstance(arch, str) or not ARCH.fullmatch(arch):
        raise ValueError(f"unknown architecture {arch!r}")
    n, size = data.get("num_classes"), data.get("input_size")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError("num_classes must be a whole number above 0")
    if not isinstance(size, int) or isinstance(size, bool) or not 16 <= size <= 2048:
        raise ValueError("input_size must be a whole number from 16 to 2048")
    colour = data.get("colour")
    if colour not in ("rgb", "caffe"):
        raise ValueError("colour must be rgb or caffe")
    mean, std = _three(data.get("mean"), "mean"), _three(data.get("std"), "std")
    if min(std) <= 0:
        raise ValueError("std must be above 0")
    layers = data.get("layers")
    if not isinstance(layers, list) or not layers or not all(
            isinstance(x, list) and len(x) == 2 and all(isinstance(y, str) for y in x) for x in layers):
        raise ValueError("layers must be a list of [name, module] pairs")
    output = data.get("output_layer")
    if output not in [x[0] for x in layers]:
        raise ValueError(f"output_layer {output!r} is not one of its layers")
    for key in ("weights", "classes"):
        f = data.get(key)
        if key == "classes" and f is None:
            continue
        if not isinstance(f, str) or "/" in f or "\\" in f or f.startswith(".") or not (folder / f).is_file():
            raise ValueError(f"its {key} file {f!r} is missing from {folder}")
    return Entry(name, arch, n, data["weights"], size, colour, mean, std, output, tuple(tuple(x) for x in layers),
                 data.get("classes"), str(folder))


_warned: set = set()


def entries() -> list[Entry]:
    """Every sound entry in the data folder, by name; damaged ones are skipped with a warning."""
    out = []
    base = root()
    if not base.is_dir():
        return out
    # dot-folders are entries being staged (`staging`): not entries yet, and no warning
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        path = folder / ENTRY_FILE
        try:
            out.append(_from_json(json.loads(path.read_text(encoding="utf-8")), folder))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            stamp = (str(path), path.stat().st_mtime_ns if path.is_file() else None)
            if stamp not in _warned:
                _warned.add(stamp)
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                log.warning("skipping the added network in %s: %s", folder, why)
    return out


def get(name: str) -> Optional[Entry]:
    return next((e for e in entries() if e.name == name), None)


@contextmanager
def staging(name: str) -> Iterator[Path]:
    """A folder of this module's own (`.NAME.partial`) to copy the user's files into and check there; it becomes
    the entry with `commit`, or is removed when anything fails, so a half-written entry never shows."""
    if (root() / name).exists():
        raise UserError(f"a network named {name!r} exists already; `models remove {name}` first")
    tmp = root() / f".{name}.partial"
    made = not root().exists()
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot write the network into {root()}: {exc.strerror or exc}") from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a commit (renamed), else what a failure left
        if made and not any(root().iterdir()):
            root().rmdir()  # a refused first add leaves the data folder as it was


def commit(entry: Entry, tmp: Path) -> Entry:
    """Write the entry's network.json into the staged folder `tmp` (holding the checked copies) and move it into
    place in one step."""
    dest = root() / entry.name
    if dest.exists():
        raise UserError(f"a network named {entry.name!r} exists already; `models remove {entry.name}` first")
    try:
        data = {k: v for k, v in asdict(entry).items() if k != "folder"}
        (tmp / ENTRY_FILE).write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.rename(dest)
    except OSError as exc:
        raise UserError(f"cannot write the network into {root()}: {exc.strerror or exc}") from None
    return _from_json(json.loads((dest / ENTRY_FILE).read_text(encoding="utf-8")), dest)


def remove(name: str) -> Path:
    """Delete an added network's folder (only folders this module wrote: one holding network.json)."""
    check_name(name)
    folder = root() / name
    if not (folder / ENTRY_FILE).is_file():
        raise UserError(f"no added network named {name!r} (see `python -m dgnam_engine models`)")
    try:
        if folder.is_symlink():  # put there by hand: the link goes, the folder it points to is not ours to delete
            folder.unlink()
        else:
            shutil.rmtree(folder)
    except OSError as exc:
        raise UserError(f"cannot remove {folder}: {exc.strerror or exc}") from None
    return folder
