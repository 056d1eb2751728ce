"""Networks from files a user already has: a published network's weights taken from a path (`fetch NAME --from
FILE`, Setup's "use a file I have"), and a network of the user's own (`models add`). Every file is checked
against its architecture before anything is written; the user's file is copied, never moved or changed.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import class_lists, user_networks
from . import targets as T
from . import weights as W
from .errors import UserError, WeightsCorrupt
from .files import publish


def _source(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"file not found: {p}")
    return p


def check_fits(spec: T.TargetSpec, path: Path) -> None:
    """Load `path` into the network of `spec` (random weights first); WeightsCorrupt in one line naming what does
    not fit: the class count, missing or unexpected keys, a shape."""
    sd = W.load_state_dict(path)
    model = spec.build()
    sd = spec.remap(W.normalise_keys(sd, model.state_dict().keys()), model)
    problem = W.fit_problem(model, sd)
    if problem is not None:
        raise WeightsCorrupt(f"{path} does not fit {spec.name}: {problem}")


def place(name: str, path: str | os.PathLike) -> Path:
    """Check the file against network `name` and copy it where lookups find it (torch hub's checkpoints folder,
    under the file name a download would have); returns where it now is. A file already there is replaced only
    by one that fits."""
    spec = T.get_spec(name)
    if spec.weights is None or spec.weights.package_path is not None:
        raise UserError(f"{name} takes no weights file: its weights come with it")
    src = _source(path)
    check_fits(spec, src)
    dest = W.checkpoints_dir() / _place_name(spec.weights, src)
    if dest.exists() and dest.resolve() == src.resolve():
        return dest  # already where lookups look
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            publish(Path(tmp), dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        raise UserError(f"cannot copy {src} into {dest.parent}: {exc.strerror or exc}") from None
    return dest


def _place_name(wf: W.WeightFile, src: Path) -> str:
    """The published name, unless that name carries a sha256 prefix the file does not have (a conversion of the
    user's own): then the network's own name among the file's aliases, so the cache's hash check stays true."""
    m = torch.hub.HASH_REGEX.search(wf.filename)
    if m is None or _sha256(src).startswith(m.group(1)):
        return wf.filename
    return next(a for a in wf.aliases if not torch.hub.HASH_REGEX.search(a))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _head_classes(path: Path) -> Optional[int]:
    """The class count a state dict's last layer says (its last 2-D weight's rows), for `models add` without
    --num-classes or --classes."""
    sd = W.load_state_dict(path)
    mats = [v for k, v in sd.items() if k.endswith("weight") and v.dim() == 2]
    return int(mats[-1].shape[0]) if mats else None


def add(name: str, arch: str, weights: str | os.PathLike, classes: Optional[str | os.PathLike] = None,
        num_classes: Optional[int] = None, input_size: Optional[int] = None,
        mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> user_networks.Entry:
    """Add a network of the user's own to the data folder, checked first: the name is free, the architecture
    exists, the class names (if any) match the class count, and the weights load into it."""
    user_networks.check_name(name)
    if name in T.TARGETS or user_networks.get(name) is not None:
        raise UserError(f"a network named {name!r} exists already")
    if not user_networks.ARCH.match(arch):
        raise UserError(f"unknown architecture {arch!r}: use torchvision:<name>, timm:<name> or caffenet")
    src = _source(weights)
    names = class_lists.read_names_file(classes) if classes is not None else None
    if num_classes is None:
        num_classes = len(names) if names is not None else _head_classes(src) or 1000
    if num_classes < 1:
        raise UserError("--num-classes must be 1 or more")
    if names is not None and len(names) != num_classes:
        raise UserError(f"the class names file has {len(names)} names, the network {num_classes} classes")
    if (mean is None) != (std is None):
        raise UserError("give --mean and --std together")
    for vals, what in ((mean, "mean"), (std, "std")):
        if vals is not None and len(vals) != 3:
            raise UserError(f"--{what} takes three numbers (red, green, blue)")
    if std is not None and min(std) <= 0:
        raise UserError("--std values must be above 0")
    model = T.build_architecture(arch, num_classes)
    sd = W.load_state_dict(src)
    problem = W.fit_problem(model, sd)
    if problem is not None:
        raise WeightsCorrupt(f"{src} does not fit {arch} with {num_classes} classes: {problem}")
    layers, output = T.architecture_layers(arch, model)
    size, colour, m, s = _convention(arch, input_size, mean, std)
    if size is not None and not 16 <= size <= 2048:
        raise UserError("--input-size must be from 16 to 2048")
    entry = user_networks.Entry(
        name=name, arch=arch, num_classes=num_classes, weights="weights" + (".safetensors" if src.suffix ==
                                                                            ".safetensors" else ".pth"),
        input_size=size, colour=colour, mean=m, std=s, output_layer=output,
        layers=tuple((a, b) for a, b in layers), classes="classes.txt" if names is not None else None)
    return user_networks.save(entry, src, Path(classes).expanduser() if classes is not None else None)


def _convention(arch: str, size, mean, std):
    """The input convention of an added network: what the user said, else the architecture's usual one."""
    if arch == "caffenet" and mean is None:
        return size or 227, "caffe", T.IMAGENET_MEAN, T.IMAGENET_STD
    default_size, default_mean, default_std = 224, T.IMAGENET_MEAN, T.IMAGENET_STD
    if arch.startswith("timm:"):
        import timm

        cfg = timm.models.get_pretrained_cfg(arch.partition(":")[2])
        if cfg is not None:
            default_size = (getattr(cfg, "input_size", None) or (3, 224, 224))[-1]
            default_mean, default_std = tuple(cfg.mean), tuple(cfg.std)
    return (size or default_size, "rgb", tuple(float(v) for v in (mean or default_mean)),
            tuple(float(v) for v in (std or default_std)))
