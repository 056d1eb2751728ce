"""Networks from files a user already has: a published network's weights taken from a path (`fetch NAME --from
FILE`, Setup's "use a file I have"), and a network of the user's own (`models add`). Every file is checked
against its architecture before anything is written; the user's file is copied, never moved or changed.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

from . import class_lists, user_networks
from . import targets as T
from . import weights as W
from .errors import UserError, WeightsCorrupt
from .files import copy_regular, publish, regular_file


def _source(path: str | os.PathLike) -> Path:
    return regular_file(path, "weights file")


def check_fits(spec: T.TargetSpec, path: Path, shown: Optional[Path] = None) -> None:
    """Load `path` into the network of `spec` (random weights first); WeightsCorrupt in one line naming what does
    not fit: the class count, missing or unexpected keys, a shape, values that are not numbers. `shown`: the
    name the user knows the file by (`path` may be the copy being checked)."""
    shown = shown or path
    sd = _load(path, shown)
    model = spec.build()
    sd = spec.remap(W.normalise_keys(sd, model.state_dict().keys()), model)
    problem = W.fit_problem(model, sd)
    if problem is not None:
        raise WeightsCorrupt(f"{shown} does not fit {spec.name}: {problem}")
    _check_finite(sd, shown)


def _load(path: Path, shown: Path) -> dict[str, torch.Tensor]:
    """load_state_dict of the copy `path`, its messages naming the user's file `shown`."""
    try:
        return W.load_state_dict(path)
    except WeightsCorrupt as exc:
        raise WeightsCorrupt(str(exc).replace(str(path), str(shown))) from None


def _check_finite(sd: dict[str, torch.Tensor], shown: Path) -> None:
    """Weights holding NaN or infinity make every activation NaN: refused where they come in."""
    for k, v in sd.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise WeightsCorrupt(f"{shown} holds NaN or infinite values ({k}): the network would give NaN for every "
                                 f"picture; save the weights again from a sound model")


@contextmanager
def _staged_copy(src: Path, folder: Path, name: str) -> Iterator[Path]:
    """A copy of `src` in `folder` under our own temporary name (ending in src's suffix, which the loader goes
    by), removed unless the caller moved it into place."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=f".part{src.suffix}")
    os.close(fd)
    try:
        copy_regular(src, Path(tmp), "weights file")
        yield Path(tmp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def place(name: str, path: str | os.PathLike) -> Path:
    """Copy the file where lookups find network or prior `name` (torch hub's checkpoints folder, under the file
    name a download would have), then check the copy against its architecture (so no swap of the user's file
    after the check reaches the cache); returns where it now is. A file already there is replaced only by one
    that fits."""
    from . import priors as P

    if name not in T.all_specs() and not name.startswith("timm/") and name in P.all_specs():
        return _place_prior(P.get_spec(name), path)
    spec = T.get_spec(name)
    if spec.weights is None or spec.weights.package_path is not None:
        raise UserError(f"{name} takes no weights file: its weights come with it")
    src = _source(path)
    folder = W.checkpoints_dir()
    if (folder / spec.weights.filename).exists() and (folder / spec.weights.filename).resolve() == src.resolve():
        return folder / spec.weights.filename  # already where lookups look
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _staged_copy(src, folder, spec.weights.filename) as copy:
            check_fits(spec, copy, src)
            dest = folder / _place_name(spec.weights, copy, name)
            publish(copy, dest)
    except OSError as exc:
        raise UserError(f"cannot copy {src} into {folder}: {exc.strerror or exc}") from None
    return dest


def _place_prior(spec, path: str | os.PathLike) -> Path:
    """`fetch fc6 --from FILE`: an original prior's generator weights, copied and checked as for a network."""
    if spec.weights is None:
        raise UserError(f"prior {spec.name} ships with the project: it takes no file (a prior file of your own "
                        f"loads with --prior-file FILE)")
    src = _source(path)
    folder = W.checkpoints_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _staged_copy(src, folder, spec.weights.filename) as copy:
            check_prior_fits(spec, copy, src)
            dest = folder / spec.weights.filename
            publish(copy, dest)
    except OSError as exc:
        raise UserError(f"cannot copy {src} into {folder}: {exc.strerror or exc}") from None
    return dest


def check_prior_fits(spec, path: Path, shown: Optional[Path] = None) -> None:
    """Load `path` into an original prior's generator; WeightsCorrupt in one line as check_fits."""
    from . import generators

    shown = shown or path
    sd = _load(path, shown)
    gen = generators.build(spec.arch, **spec.arch_kwargs)
    problem = W.fit_problem(gen, sd)
    if problem is not None:
        raise WeightsCorrupt(f"{shown} does not fit the {spec.name} prior's generator: {problem}")
    _check_finite(sd, shown)


def _place_name(wf: W.WeightFile, src: Path, name: str) -> str:
    """The published name, unless that name carries a sha256 prefix the file does not have (a conversion of the
    user's own): then the network's own name among the file's aliases, so the cache's hash check stays true."""
    m = torch.hub.HASH_REGEX.search(wf.filename)
    if m is None or _sha256(src).startswith(m.group(1)):
        return wf.filename
    own = next((a for a in wf.aliases if not torch.hub.HASH_REGEX.search(a)), None)
    if own is None:
        raise UserError(f"{src} is not the published {wf.filename} (its sha256 differs) and {name} has no other "
                        f"name to keep a file of your own under: load it with --weights FILE instead")
    return own


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _head_classes(sd: dict[str, torch.Tensor]) -> Optional[int]:
    """The class count a state dict's last layer says (its last 2-D weight's rows)."""
    mats = [v for k, v in sd.items() if k.endswith("weight") and v.dim() == 2]
    return int(mats[-1].shape[0]) if mats else None


def _look_alike(arch: str, sd: dict[str, torch.Tensor], num_classes: int) -> Optional[str]:
    """Another torchvision architecture of the same family (resnet34 for resnet18) whose keys and shapes are the
    file's, or None. Built on the meta device: no memory, no time."""
    kind, _, name = arch.partition(":")
    family = re.sub(r"[0-9_]+.*$", "", name)
    if kind != "torchvision" or not family:
        return None
    import torchvision.models as tvm

    for other in tvm.list_models(module=tvm):
        if other == name or re.sub(r"[0-9_]+.*$", "", other) != family:
            continue
        try:
            with torch.device("meta"):
                own = tvm.get_model(other, weights=None, num_classes=num_classes).state_dict()
        except Exception:  # an architecture that cannot be built this way is simply not the one
            continue
        got = W.normalise_keys(sd, own.keys())
        if set(got) == set(own) and all(tuple(got[k].shape) == tuple(own[k].shape) for k in own):
            return other
    return None


def _arch_exists(arch: str) -> bool:
    kind, _, name = arch.partition(":")
    if kind == "torchvision":
        import torchvision.models as tvm

        return name in tvm.list_models(module=tvm)
    if kind == "timm":
        import timm

        return timm.is_model(name)
    return arch == "caffenet"


def _arch_hint(arch: str) -> str:
    """"did you mean torchvision:resnet18?" for a near miss (`torchvision:resnet-18`, `resnet18`), else ""."""
    import difflib

    kind, sep, name = arch.partition(":")
    if not sep:
        kind, name = "torchvision", arch
    if kind == "torchvision":
        import torchvision.models as tvm

        known = tvm.list_models(module=tvm)
    elif kind == "timm":
        import timm

        known = timm.list_models()
    else:
        return "did you mean caffenet?" if difflib.get_close_matches(arch, ["caffenet"], 1, 0.6) else ""
    squashed = {re.sub(r"[^a-z0-9]", "", k.lower()): k for k in known}
    want = re.sub(r"[^a-z0-9]", "", name.lower())
    close = ([squashed[want]] if want in squashed else []) or difflib.get_close_matches(name, known, 3, 0.75)
    return f"did you mean {' or '.join(f'{kind}:{c}' for c in close)}?" if close else ""


def _check_convention(input_size, mean, std) -> None:
    if input_size is not None and not (isinstance(input_size, int) and 16 <= input_size <= 2048):
        raise UserError(f"--input-size {input_size} is out of range: give the pixels from 16 to 2048")
    if (mean is None) != (std is None):
        raise UserError("give --mean and --std together")
    for vals, what, low, high in ((mean, "mean", 0.0, 1.0), (std, "std", STD_MIN, STD_MAX)):
        if vals is None:
            continue
        if len(vals) != 3:
            raise UserError(f"--{what} takes three numbers (red, green, blue)")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and low <= v <= high for v in vals):
            raise UserError(f"--{what} {','.join(map(str, vals))}: give three numbers from {low:g} to {high:g} "
                            f"(pictures are read as RGB from 0 to 1)")


STD_MIN, STD_MAX = 1e-3, 10.0  # an input std below 1e-3 multiplies a picture by a thousand: never a real one


def add(name: str, arch: str, weights: str | os.PathLike, classes: Optional[str | os.PathLike] = None,
        num_classes: Optional[int] = None, input_size: Optional[int] = None,
        mean: Optional[Sequence[float]] = None, std: Optional[Sequence[float]] = None) -> user_networks.Entry:
    """Add a network of the user's own to the data folder, checked first: the name is free, the architecture
    exists, the class names (if any) match the class count, and the weights load into it. The user's files are
    copied first and the copies are checked, so what is kept is what was checked."""
    user_networks.check_name(name)
    if name in T.TARGETS or user_networks.get(name) is not None:
        raise UserError(f"a network named {name!r} exists already")
    if not user_networks.ARCH.fullmatch(arch) or not _arch_exists(arch):
        raise UserError(f"unknown architecture {arch!r}: " + (_arch_hint(arch) or
                                                              "use torchvision:<name>, timm:<name> or caffenet"))
    if num_classes is not None and not 1 <= num_classes <= class_lists.MAX_CLASSES:
        raise UserError(f"--num-classes {num_classes} is out of range: give from 1 to {class_lists.MAX_CLASSES}")
    _check_convention(input_size, mean, std)
    src = _source(weights)
    csrc = regular_file(classes, "class names file") if classes is not None else None
    wname = "weights" + (".safetensors" if src.suffix == ".safetensors" else ".pth")
    with user_networks.staging(name) as folder:
        copy_regular(src, folder / wname, "weights file")
        names = None
        if csrc is not None:
            copy_regular(csrc, folder / "classes.txt", "class names file")
            names = class_lists.read_names_file(folder / "classes.txt", shown=csrc)
        sd = _load(folder / wname, src)
        head = _head_classes(sd)
        counted = num_classes is None and names is not None  # the class count is the names file's
        if num_classes is None:
            num_classes = len(names) if names is not None else head or 1000
        if names is not None and len(names) != num_classes:
            raise UserError(f"the class names file has {len(names)} names, the network {num_classes} classes "
                            f"(--num-classes): give one name per class in {csrc}")
        model = T.build_architecture(arch, num_classes)
        problem = W.fit_problem(model, sd)
        if problem is not None and counted and head is not None and head != len(names):
            raise UserError(f"your class names file {csrc} has {len(names)} names (lines), the network in {src} has "
                            f"{head} outputs: give one name per output ({problem})")
        if problem is not None:
            like = _look_alike(arch, sd, num_classes)
            hint = f"; it looks like {like}: give --arch torchvision:{like}" if like else ""
            raise WeightsCorrupt(f"{src} does not fit {arch} with {num_classes} classes: {problem}{hint}")
        _check_finite(sd, src)
        layers, output = T.architecture_layers(arch, model)
        size, colour, m, s = _convention(arch, input_size, mean, std)
        entry = user_networks.Entry(
            name=name, arch=arch, num_classes=num_classes, weights=wname, input_size=size, colour=colour, mean=m,
            std=s, output_layer=output, layers=tuple((a, b) for a, b in layers),
            classes="classes.txt" if names is not None else None)
        return user_networks.commit(entry, folder)


def _convention(arch: str, size, mean, std):
    """The input convention of an added network: what the user said, else the architecture's usual one."""
    if arch == "caffenet" and mean is None:
        return size if size is not None else 227, "caffe", T.IMAGENET_MEAN, T.IMAGENET_STD
    default_size, default_mean, default_std = 224, T.IMAGENET_MEAN, T.IMAGENET_STD
    if arch.startswith("timm:"):
        import timm

        cfg = timm.models.get_pretrained_cfg(arch.partition(":")[2])
        if cfg is not None:
            default_size = (getattr(cfg, "input_size", None) or (3, 224, 224))[-1]
            default_mean, default_std = tuple(cfg.mean), tuple(cfg.std)
    return (size if size is not None else default_size, "rgb", tuple(float(v) for v in (mean or default_mean)),
            tuple(float(v) for v in (std or default_std)))
