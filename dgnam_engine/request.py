"""One request type for every front end (dashboard worker, precompute local and on Ray, the command line) and the
one resolver that turns it into the exact run: every default filled in, the device and precision really used,
the steps and learning rates the loop will take. `runner.run` runs a resolved `Run`; the results store keys a
result by the `Run` it came from (`store.identify`). Nothing else works out a default.

Resolving loads no network: it reads the registries, finds weight files (hashed once, see store.content_hash)
and a prior's bounds (a few KB), so a stored result can be found before any work.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Optional

from . import accel as A
from . import limits, maco, objectives, photo_init, pixel_am, variants
from . import priors as P
from . import targets as T
from . import weights as W
from .dgnam import DECAY
from .errors import UserError
from .files import regular_file
from .photos import check_photo_file
from .store import Identity, file_identity, identify


METHODS = ("dgnam", "pixel", "maco")
VARIANT_FIELDS = {"views": 0, "bn_weight": 0.0}  # Settings fields of the DGN-AM variants, with their paper values


@dataclass
class Settings:
    """Everything besides model, layer and unit that determines a result; None: the resolver's default."""

    method: str = "dgnam"  # one of METHODS
    prior: Optional[str] = None  # None: the default prior
    n_iters: Optional[int] = None  # None: the model's default (200), or photo_init.PHOTO_ITERS from a photo
    lr_start: Optional[float] = None  # None: the model's default, scaled to the prior's code range
    lr_end: Optional[float] = None
    decay: float = DECAY
    seed: int = 0
    position: Optional[tuple[int, int]] = None  # conv units: (row, col); None = centre
    init_image: Optional[str] = None  # start from this photo's code instead of random codes (dgnam only)
    objective: Optional[str] = None  # a weighted sum of units ("bee + 0.5*daisy", objectives.py) instead of one unit
    preview: bool = False  # a quick preview (as_preview): marked, and stored apart from full runs
    accel: str = "auto"  # "auto": the fastest measured path for the device (accel.for_device); "plain": fp32 eager
    views: int = 0  # DGN-AM variant: random views of G(h) per step (variants.py); 0: the paper's objective
    bn_weight: float = 0.0  # DGN-AM variant: weight of the batch-norm statistics term (variants.py); 0: none

    def to_dict(self) -> dict:
        return asdict(self)

    def as_preview(self) -> "Settings":
        """The quick preview of these settings for live views: accel.PREVIEW_ITERS steps (the same schedule,
        compressed), the fast path. A few seconds on a laptop CPU; see docs/performance.md."""
        return replace(self, n_iters=min(self.n_iters or A.PREVIEW_ITERS, A.PREVIEW_ITERS),
                       accel="auto", preview=True)


@dataclass
class Request:
    """What a front end asks for: plain data, so it travels to Ray workers."""

    model: Optional[str]  # None: targets.default_target()
    units: list[int]
    layer: Optional[str] = None  # None: the model's output layer
    settings: Settings = field(default_factory=Settings)
    seeds: Optional[list[int]] = None  # one per unit; None: settings.seed for all
    model_weights: Optional[str] = None
    prior_file: Optional[str] = None
    random_weights: bool = False
    device: str = "auto"  # "auto": the GPU when there is one

    def seed_list(self) -> list[int]:
        return list(self.seeds) if self.seeds is not None else [self.settings.seed] * len(self.units)

    def identities(self, device: Optional[str] = None) -> list[Identity]:
        """One store identity per (unit, seed) when run on `device` (default: the request's), in the order the run
        returns its results."""
        return resolve(self if device is None else replace(self, device=device)).identities()


@dataclass(frozen=True)
class Run:
    """A request resolved: exactly what the loop will do."""

    request: Request
    model: str
    layer: str
    units: tuple[int, ...]
    seeds: tuple[int, ...]
    method: str
    device: str  # "cpu" or "cuda[:N]"
    accel: Optional[A.Accel]  # None: the fp32 eager reference path
    precision: str  # accel.describe: "cpu bfloat16", "cuda float32 plain"
    weights_path: Optional[str]  # the target's weights file; None: random or built-in weights
    weights_id: str
    prior: Optional[str]  # None for the pixel method
    prior_kind: str  # "original", "trained" or "none"
    prior_path: Optional[str]
    prior_id: str
    n_iters: int
    lr_start: float
    lr_end: float
    terms: Optional[tuple] = None  # a combined objective's terms (objectives.Term)

    @property
    def settings(self) -> Settings:
        return self.request.settings

    def key_settings(self) -> dict:
        """The settings as a result is keyed and stored: every value the run uses (the seed is keyed apart)."""
        s = self.settings
        d = s.to_dict()
        d.pop("seed")
        for name in VARIANT_FIELDS:  # keyed only when used: the paper's results keep the keys they always had
            if d[name] == VARIANT_FIELDS[name]:
                d.pop(name)
        d.update(n_iters=self.n_iters, lr_start=self.lr_start, lr_end=self.lr_end, accel=self.precision,
                 prior=self.prior)
        if s.init_image:  # the photo by its content too: an edited photo under the same name is another start
            d["init_image_id"] = file_identity(s.init_image)
        return d

    def identities(self) -> list[Identity]:
        return [identify(self, u, seed) for u, seed in zip(self.units, self.seeds)]


def resolve(req: Request) -> Run:
    """Check every input (UserError in one line for a bad one) and fill in every default."""
    s = req.settings
    if s.method not in METHODS:
        raise UserError(f"unknown method {s.method!r}; use {', '.join(METHODS[:-1])} or {METHODS[-1]}")
    if s.accel not in ("auto", "plain"):
        raise UserError(f"unknown accel setting {s.accel!r}; use auto or plain")
    units = [int(u) for u in req.units]
    if not units:
        raise UserError("no unit given")
    seeds = [int(x) for x in req.seed_list()]
    if len(seeds) != len(units):
        raise UserError("give one seed per unit")
    limits.check_settings(s, seeds)
    vp = variants.problem(s.views, s.bn_weight)
    if vp:
        raise UserError(vp)
    if (s.views or s.bn_weight) and s.method != "dgnam":
        raise UserError(f"views and the batch-norm term are DGN-AM variants; the {s.method} method takes neither")
    if s.init_image is not None and s.method != "dgnam":
        raise UserError(f"starting from a photo needs a generator prior; the {s.method} method has none")
    for path, what in ((req.model_weights, "weights file"), (req.prior_file, "prior file")):
        if path is not None:
            regular_file(path, what)  # before anything hashes it: a pipe or a device is named, never read
    if s.init_image is not None:
        check_photo_file(Path(s.init_image).expanduser())
    spec = T.get_spec(req.model or T.default_target())
    dev = T.resolve_device(req.device)
    layer, terms = req.layer or spec.output_layer, None
    if s.objective is not None:
        terms = tuple(objectives.parse(s.objective, spec.classes()))
        layer, units = terms[0].layer or spec.output_layer, [terms[0].unit] * len(units)  # filed under term 1
    if req.random_weights:
        weights_path, weights_id = None, "random"
    elif req.model_weights is not None:
        weights_path, weights_id = str(req.model_weights), file_identity(req.model_weights)
    elif spec.weights is not None:
        found = W.find(spec.weights)
        weights_path, weights_id = (str(found) if found else None), file_identity(found)
    else:
        weights_path, weights_id = None, "builtin"
    n = s.n_iters or (photo_init.PHOTO_ITERS if s.init_image else spec.n_iters)
    accel = A.resolve(s.accel, dev)  # every method's target passes take the fast path unless "plain" is asked
    if s.method == "maco":
        prior = prior_path = None
        # its natural spectrum plays the prior: another spectrum is another picture
        prior_kind = "none"
        prior_id = f"maco@{file_identity(maco.MAGNITUDE_FILE)}+{file_identity(maco.COLOUR_FILE)}"
        n = s.n_iters or maco.MACO_DEFAULTS["n_iters"]
        lr0 = lr1 = s.lr_start if s.lr_start is not None else maco.MACO_DEFAULTS["lr"]  # NAdam: one lr
    elif s.method == "pixel":
        prior = prior_path = None
        prior_kind, prior_id = "none", "pixel"
        lr0 = s.lr_start if s.lr_start is not None else pixel_am.PIXEL_DEFAULTS["lr_start"]
        lr1 = s.lr_end if s.lr_end is not None else pixel_am.PIXEL_DEFAULTS["lr_end"]
    else:
        pfile = req.prior_file
        if s.prior is None and pfile is not None and str(pfile).endswith(".safetensors"):
            pspec = P.spec_from_file(pfile)  # a prior file need not be one of the registered priors
        else:
            pspec = P.get_spec(s.prior or P.default_prior_name())
        found = pfile or pspec.file or (W.find(pspec.weights) if pspec.weights else None)
        prior, prior_kind = pspec.name, pspec.kind
        prior_path = str(found) if found else None
        prior_id = f"{prior}@{file_identity(found)}"
        scale = lr_scale(pspec, prior_path) * (photo_init.PHOTO_LR_FACTOR if s.init_image else 1.0)
        lr0 = s.lr_start if s.lr_start is not None else spec.lr[0] * scale
        lr1 = s.lr_end if s.lr_end is not None else spec.lr[1]
    return Run(request=req, model=spec.name, layer=layer, units=tuple(units), seeds=tuple(seeds), method=s.method,
               device=str(dev), accel=accel, precision=A.describe(accel, dev), weights_path=weights_path,
               weights_id=weights_id, prior=prior, prior_kind=prior_kind, prior_path=prior_path, prior_id=prior_id,
               n_iters=int(n), lr_start=float(lr0), lr_end=float(lr1), terms=terms)


def lr_scale(spec: P.PriorSpec, path: Optional[str]) -> float:
    """The prior's step-size factor (priors.Prior.lr_scale) from its bounds alone, without its generator."""
    stamp = None
    if path is not None and Path(path).is_file():
        st = Path(path).stat()
        stamp = (str(path), st.st_size, st.st_mtime_ns)
    return _lr_scale(spec.name, spec.bounds_file, spec.code_shape, stamp)


@lru_cache(maxsize=64)
def _lr_scale(name: str, bounds_file: Optional[str], code_shape: tuple, stamp: Optional[tuple]) -> float:
    path = stamp[0] if stamp else None
    if path is not None and str(path).endswith(".safetensors"):
        try:
            lower, upper = P.read_file_bounds(path)
        except Exception:  # not a prior file with bounds: the named prior's own bounds below
            lower = upper = None
        if lower is not None:
            return float((upper - lower).mean() / P.fc6_bound_scale())
    if bounds_file is None:
        raise UserError(f"prior {name}: its file {path} is missing")
    upper = P.read_bounds(bounds_file, code_shape)
    return float(upper.mean() / P.fc6_bound_scale())


def on_worker(req: Request, gpu_ids) -> Request:
    """The request as a Ray worker runs it: on the GPU Ray gave it, else on its CPU (so the worker, not the head,
    resolves the device and precision its results are keyed with)."""
    return replace(req, device="cuda" if gpu_ids else "cpu")
