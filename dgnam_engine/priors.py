"""Generator priors as data: architecture, weights, code shape, per-unit bounds and the encoder they invert.

Two kinds plug in the same way:
- the original DeePSiM priors (conv3, pool5, fc6, fc7), weights from the Hugging Face repo
  binxu/DeePSim_DosovitskiyBrox2016, bounds from the original act_range/3x files in assets/;
- priors in one safetensors file whose metadata holds a JSON card (architecture, code shape, encoder, ...) and
  whose tensors hold the generator weights plus `bounds.lower` / `bounds.upper` (see `save_prior_file`).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import generators, weights as W
from .assets import ASSETS
from .errors import UserError, WeightsCorrupt
from .files import regular_file

ACT_RANGE = ASSETS / "act_range" / "3x"
DEMO_PRIORS_DIR = ASSETS / "priors"
SUMS = "SHA256SUMS"  # beside the demo priors: `<sha256>  <file name>` per shipped file, as sha256sum writes it
HF_DEEPSIM = "binxu/DeePSim_DosovitskiyBrox2016"
CARD_KEY = "dgnam_card"


@dataclass(frozen=True)
class PriorSpec:
    name: str
    title: str
    arch: str
    code_shape: tuple[int, ...]
    encoder: str  # "model:layer" the generator inverts
    weights: Optional[W.WeightFile] = None  # original priors: where to find the file
    bounds_file: Optional[str] = None  # original priors: act_range file name
    file: Optional[str] = None  # file-based priors: the safetensors path
    arch_kwargs: dict = field(default_factory=dict)
    kind: str = "original"  # "original" or "trained"
    note: str = ""
    depth: str = ""  # which of the paper's layers it plays: conv3 / pool5 / fc6 / fc7
    damaged: str = ""  # file-based priors: why the file cannot be read (its card beside it still names it)
    size: Optional[int] = None  # bytes to download, about (the generator's parameters x 4 bytes)

    @property
    def input_convention(self) -> str:
        """What it reads and writes, in one line: its code and the encoder layer that code comes from."""
        return f"code {'x'.join(map(str, self.code_shape))} of {self.encoder} -> BGR picture"


@dataclass
class Prior:
    """A loaded prior, ready for DGN-AM."""

    spec: PriorSpec
    generator: torch.nn.Module
    lower: torch.Tensor  # per-unit bounds, shape = code_shape
    upper: torch.Tensor
    path: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def lr_scale(self) -> float:
        """Step-size factor relative to the fc6 prior: codes of other priors live on other scales."""
        return float((self.upper - self.lower).mean() / fc6_bound_scale())

    def to(self, device) -> "Prior":
        self.generator.to(device)
        self.lower, self.upper = self.lower.to(device), self.upper.to(device)
        return self


def _hf(name: str) -> W.WeightFile:
    f = f"upconvGAN_{name}.pt"
    return W.WeightFile(f, name, hf_repo=HF_DEEPSIM, hf_filename=f)


ORIGINAL_PRIORS = {
    "conv3": PriorSpec("conv3", "conv3 (original DeePSiM, layer 3)", "upconv_conv34", (384, 13, 13),
                       "caffenet:conv3", _hf("conv3"), "conv3.txt", depth="conv3", size=32_300_000),
    "pool5": PriorSpec("pool5", "pool5 (original DeePSiM, layer 5)", "upconv_pool5", (256, 6, 6),
                       "caffenet:pool5", _hf("pool5"), "conv5.txt", depth="pool5", size=50_800_000),
    "fc6": PriorSpec("fc6", "fc6 (original DeePSiM, layer 6, best)", "upconv_fc", (4096,), "caffenet:fc6",
                     _hf("fc6"), "fc6.txt", depth="fc6", size=224_400_000),
    "fc7": PriorSpec("fc7", "fc7 (original DeePSiM, layer 7)", "upconv_fc", (4096,), "caffenet:fc7",
                     _hf("fc7"), "fc7.txt", depth="fc7", size=224_400_000),
}
DEPTHS = ("conv3", "pool5", "fc6", "fc7")  # the paper's four priors, early to late


def read_bounds(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """One line of integers in C order, reshaped to the code shape (the original loader only handled vectors)."""
    vals = np.array((ACT_RANGE / name).read_text().split(), dtype=np.float32)
    if vals.size != int(np.prod(shape)):
        raise WeightsCorrupt(f"{ACT_RANGE / name} holds {vals.size} bounds, expected {int(np.prod(shape))}")
    return torch.from_numpy(vals.reshape(shape))


@lru_cache(maxsize=1)
def fc6_bound_scale() -> float:
    return float(read_bounds("fc6.txt", (4096,)).mean())


# ----- prior files (safetensors + card) -----

def read_card(path: str | os.PathLike) -> dict:
    path = Path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:
        raise WeightsCorrupt(f"{path} is not a readable safetensors prior file") from None
    if CARD_KEY in meta:
        return _parse_card(meta[CARD_KEY], f"{path}: its card (metadata '{CARD_KEY}')")
    side = path.with_suffix(".json")
    if side.is_file():
        return read_side_card(side)
    raise WeightsCorrupt(f"{path} has no prior card (metadata '{CARD_KEY}' or {side.name})")


def read_side_card(side: Path) -> dict:
    try:
        text = side.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WeightsCorrupt(f"{side}: the prior card cannot be read ({type(exc).__name__})") from None
    return _parse_card(text, f"{side}")


def _parse_card(text: str, where: str) -> dict:
    try:
        card = json.loads(text)
    except ValueError as exc:
        raise WeightsCorrupt(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise WeightsCorrupt(f"{where} is not a JSON object")
    return card


def save_prior_file(path: str | os.PathLike, generator: torch.nn.Module, lower: torch.Tensor,
                    upper: torch.Tensor, card: dict) -> Path:
    """Write a prior as one safetensors file; the card goes into its metadata and beside it as JSON."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"generator.{k}": v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    tensors["bounds.lower"] = lower.detach().cpu().float().contiguous()
    tensors["bounds.upper"] = upper.detach().cpu().float().contiguous()
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={CARD_KEY: json.dumps(card)})
    W.publish(tmp, path)
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    _seal(path)
    return path


def read_file_bounds(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """A prior file's bounds alone (a few KB), without its generator."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.get_tensor("bounds.lower").float(), f.get_tensor("bounds.upper").float()


def spec_from_file(path: str | os.PathLike) -> PriorSpec:
    return _spec_from_card(read_card(path), path)


def _spec_from_card(card: dict, path, damaged: str = "") -> PriorSpec:
    try:
        spec = PriorSpec(name=card["name"], title=card.get("title", card["name"]), arch=card["arch"],
                         code_shape=tuple(int(n) for n in card["code_shape"]),
                         encoder=f"{card['encoder']}:{card['layer']}", file=str(path),
                         arch_kwargs=card.get("arch_kwargs", {}), kind="trained", note=card.get("note", ""),
                         depth=card.get("depth", ""), damaged=damaged)
    except KeyError as exc:
        raise WeightsCorrupt(f"{path}: prior card lacks {exc}") from None
    except (TypeError, ValueError) as exc:
        raise WeightsCorrupt(f"{path}: prior card has a value of the wrong kind ({exc})") from None
    if not (isinstance(spec.name, str) and spec.name and isinstance(spec.arch_kwargs, dict)
            and all(isinstance(v, str) for v in (spec.title, spec.arch, spec.note, spec.depth))):
        raise WeightsCorrupt(f"{path}: prior card has a value of the wrong kind")
    return spec


def demo_prior_specs() -> dict[str, PriorSpec]:
    """The prior files in DEMO_PRIORS_DIR by name. A file whose card cannot be read is left out and named in one
    warning line (one bad card must not take every prior with it); a shipped prior whose file is damaged but whose
    card beside it reads is kept, marked damaged, so it is named as such where it is used and the default stays.
    The folder is read again only when its files change (a page asks for every option of every picker on every
    rerun)."""
    if not DEMO_PRIORS_DIR.is_dir():
        _SKIPPED[:] = []
        return {}
    stamp = [str(DEMO_PRIORS_DIR)]
    for e in sorted(os.scandir(DEMO_PRIORS_DIR), key=lambda e: e.name):
        try:
            st = e.stat()
        except OSError:
            continue
        stamp.append((e.name, st.st_size, st.st_mtime_ns))
    specs, skipped = _scan_demo_priors(tuple(stamp))
    _SKIPPED[:] = skipped
    return dict(specs)


@lru_cache(maxsize=4)
def _scan_demo_priors(stamp: tuple) -> tuple[tuple, tuple]:
    out, skipped = {}, []
    for p in sorted(DEMO_PRIORS_DIR.glob("*.safetensors")):
        try:
            s = spec_from_file(p)
            why = seal_problem(p)
            if why is not None:
                s = replace(s, damaged=why)
        except WeightsCorrupt as exc:
            s = _damaged_spec(p)
            if s is None:
                _warn(f"warning: prior file skipped: {exc}")
                skipped.append(f"Prior file skipped: {exc}")
                continue
        out[s.name] = s
    return tuple(out.items()), tuple(skipped)


_SKIPPED: list[str] = []  # the last listing's skipped files, one line each


def skipped_priors() -> list[str]:
    """One line per prior file the last listing left out (its card cannot be read)."""
    return list(_SKIPPED)


def _read_sums(folder: Path) -> dict[str, str]:
    """NAME -> sha256 from the folder's SHA256SUMS; empty when there is none (then nothing is checked)."""
    try:
        text = (folder / SUMS).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    sums = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if sep and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            sums[name.strip()] = digest
    return sums


def seal_problem(path: str | os.PathLike) -> Optional[str]:
    """Why a prior file in the demo priors folder is not the one shipped (its sha256 is not the one SHA256SUMS
    holds for it), or None: also for files SHA256SUMS does not name (priors trained here). One flipped bit in a
    generator's weights gives noise pictures with no other sign, so the shipped files are sealed like the atlas.
    Hashed once per file version (path, size, time, inode): a page lists the priors on every rerun."""
    path = Path(path)
    try:
        if path.resolve().parent != DEMO_PRIORS_DIR.resolve():
            return None
        st, sums_st = path.stat(), (DEMO_PRIORS_DIR / SUMS).stat()
    except OSError:
        return None
    return _seal_problem(str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino,
                         (sums_st.st_size, sums_st.st_mtime_ns, sums_st.st_ino))


@lru_cache(maxsize=64)
def _seal_problem(path: str, size: int, mtime_ns: int, ino: int, sums_stamp: tuple) -> Optional[str]:
    import hashlib

    want = _read_sums(Path(path).parent).get(Path(path).name)
    if want is None:
        return None
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if h.hexdigest() == want:
        return None
    return f"its sha256 is not the one {SUMS} beside it holds: the file was changed or damaged"


def _seal(path: Path) -> None:
    """Record a prior written into the demo priors folder in its SHA256SUMS (a retrained shipped prior would
    otherwise read as damaged). Only where a SHA256SUMS exists: elsewhere nothing is sealed."""
    import hashlib

    folder = path.parent
    if folder.resolve() != DEMO_PRIORS_DIR.resolve() or not (folder / SUMS).is_file():
        return
    sums = _read_sums(folder)
    sums[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    tmp = folder / f".{SUMS}.tmp"
    tmp.write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())), encoding="utf-8")
    os.replace(tmp, folder / SUMS)


def _damaged_spec(path: Path) -> Optional[PriorSpec]:
    """The spec of a prior whose own file is unreadable, from the card beside it; None when the file reads (then
    its card is what is wrong) or there is no readable card beside it."""
    side = path.with_suffix(".json")
    if _readable_safetensors(path) or not side.is_file():
        return None
    try:
        return _spec_from_card(read_side_card(side), path, damaged=_file_damage(path))
    except WeightsCorrupt:
        return None


def _readable_safetensors(path: Path) -> bool:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt"):
            return True
    except Exception:  # any failure to open means unreadable
        return False


def _file_damage(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    return "the file is empty" if size == 0 else "not a readable safetensors file: cut short or overwritten"


def damage_message(spec: PriorSpec) -> str:
    """One line: which prior file is damaged and what to do about it."""
    where = Path(spec.file)
    try:
        shown = where.relative_to(ASSETS.parent)
    except ValueError:
        shown = where
    restore = (f"restore it from the project (`git checkout -- {shown}` in the project folder, or a fresh copy of "
               f"the project)" if where.parent == ASSETS / "priors" else "replace it with a sound copy")
    return f"prior {spec.name!r}: {where} is damaged ({spec.damaged}): {restore}, or pick another prior with --prior"


_WARNED: set[str] = set()


def _warn(line: str) -> None:
    """Each warning once per process, on stderr: commands list priors several times."""
    if line not in _WARNED:
        _WARNED.add(line)
        print(line, file=sys.stderr)


def all_specs() -> dict[str, PriorSpec]:
    return {**ORIGINAL_PRIORS, **demo_prior_specs()}


def get_spec(name: str) -> PriorSpec:
    specs = all_specs()
    if name not in specs:
        raise UserError(f"unknown prior {name!r}; priors: {', '.join(specs)}")
    return specs[name]


def is_available(spec: PriorSpec) -> bool:
    if spec.file:
        return Path(spec.file).is_file()
    return spec.weights is not None and W.find(spec.weights) is not None


# The offline default among the demo priors. Measured (assets/priors/README.md): with the demo priors' small
# corpus, the blocks.3 prior drives Lite0's class units highest and gives the most recognisable pictures; the
# fc6-like one (lite0-pooled) is too weakly trained to be a good first impression.
DEMO_DEFAULT = "lite0-b3"


def default_prior_name() -> str:
    """fc6 when its weights are present (the paper's best); else the best-measured demo prior."""
    specs = all_specs()
    if is_available(specs["fc6"]):
        return "fc6"
    demos = [s for s in specs.values() if s.kind == "trained" and is_available(s)]
    names = [s.name for s in demos]
    if DEMO_DEFAULT in names:
        return DEMO_DEFAULT
    for s in demos:
        if s.depth == "fc6":
            return s.name
    return demos[0].name if demos else "fc6"


# ----- loading -----

def _load_original(spec: PriorSpec, explicit: Optional[str]) -> Prior:
    path = W.resolve(spec.weights, f"prior {spec.name}", explicit)
    if explicit is not None and str(explicit).endswith(".safetensors"):
        try:
            card = read_card(path)
        except WeightsCorrupt:
            card = None
        if card is not None:
            return load_file_prior(path)
    sd = W.load_state_dict(path)
    gen = generators.build(spec.arch, **spec.arch_kwargs)
    W.load_into(gen, sd, path, f"{spec.name} generator")
    upper = read_bounds(spec.bounds_file, spec.code_shape)
    return _finish(Prior(spec, gen, torch.zeros_like(upper), upper, str(path)))


def load_file_prior(path: str | os.PathLike) -> Prior:
    path = Path(path)
    regular_file(path, "prior file")
    spec = spec_from_file(path)
    why = seal_problem(path)  # a shipped prior named by its path: the same check as by its name
    if why is not None:
        raise WeightsCorrupt(damage_message(replace(spec, damaged=why)))
    sd = W.load_state_dict(path)
    try:
        lower, upper = sd.pop("bounds.lower"), sd.pop("bounds.upper")
    except KeyError:
        raise WeightsCorrupt(f"{path} lacks bounds.lower / bounds.upper") from None
    gen_sd = {k[len("generator."):]: v for k, v in sd.items() if k.startswith("generator.")}
    try:
        gen = generators.build(spec.arch, **spec.arch_kwargs)
    except (ValueError, TypeError) as exc:
        raise WeightsCorrupt(f"{path}: {exc}") from None
    W.load_into(gen, gen_sd, path, f"{spec.name} generator")
    if tuple(upper.shape) != spec.code_shape or tuple(lower.shape) != spec.code_shape:
        raise WeightsCorrupt(f"{path}: bounds do not have the code shape {spec.code_shape}")
    return _finish(Prior(spec, gen, lower.float(), upper.float(), str(path)))


def _finish(prior: Prior) -> Prior:
    prior.generator.eval().requires_grad_(False)
    return prior


def load_prior(name: Optional[str] = None, prior_file: Optional[str] = None, device="cpu") -> Prior:
    """Load a prior by name (weights from the caches) or from an explicit file.

    `prior_file` with a name loads that file as the named prior's weights; a prior file with a card
    (safetensors) loads on its own.
    """
    if name is None and prior_file is not None and str(prior_file).endswith(".safetensors"):
        return load_file_prior(prior_file).to(device)
    spec = get_spec(name or default_prior_name())
    if spec.damaged and prior_file is None:
        raise WeightsCorrupt(damage_message(spec))
    if spec.kind == "trained":
        return load_file_prior(prior_file or spec.file).to(device)
    return _load_original(spec, prior_file).to(device)
