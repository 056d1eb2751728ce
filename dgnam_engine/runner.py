"""One entry point for every front end (command line, dashboard, precompute): validate a request, load (and
cache) the target and the prior, run DGN-AM, the pixel baseline or MACO in one batch, and return plain results."""
from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, field, replace
from typing import Optional, Sequence

import numpy as np
import torch

from . import dgnam, maco, pixel_am
from . import priors as P
from . import targets as T
from . import weights as W
from .errors import UserError
from . import objectives, photo_init
from .convention import from_uint8, gen_to_rgb, to_uint8
from .limits import MAX_SEED  # noqa: F401  (runner.MAX_SEED, as before)
from .photos import read_photo
from .receptive_field import receptive_field
from .request import Request, Run, Settings, resolve
from .store import Identity


@dataclass
class UnitResult:
    model: str
    layer: str
    unit: int
    label: str
    prior: str  # prior name, or "pixel" / "maco" for the methods without a generator
    prior_kind: str  # "original", "trained" or "none"
    seed: int
    n_iters: int
    lr_start: float
    lr_end: float
    activation_start: float
    activation_final: float
    activations: list[float]
    image: np.ndarray  # HxWx3 uint8 RGB
    seconds: float
    device: str
    weights: Optional[str] = None  # the target's weights file; None = random weights
    prior_file: Optional[str] = None
    extra: dict = field(default_factory=dict)  # JSON-ready numbers and names (photo start, receptive field)
    photo: Optional[np.ndarray] = None  # with init_image: the photo as the model sees it, HxWx3 uint8
    reconstruction: Optional[np.ndarray] = None  # with init_image: G(E(photo)), the picture at step 0
    identity: Optional[Identity] = None  # how the store keys it: from the run that made it (store.identify)
    alpha: Optional[np.ndarray] = None  # MACO: HxW uint8, the accumulated |d objective / d picture| (max 255)
    cpu_threads: Optional[int] = None  # on a CPU: the intra-op threads of each pass (the picture depends on it)

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items()
             if k not in ("image", "photo", "reconstruction", "identity", "alpha")}
        d["key"] = self.identity.key if self.identity else None
        return d


_cache_lock = threading.Lock()
_targets: dict = {}
_priors: dict = {}


def get_target(model: str, device: str = "cpu", weights: Optional[str] = None,
               random_weights: bool = False) -> T.Target:
    """Loaded once per (model, device, weights) and shared: models are read-only during runs."""
    key = (model, str(T.resolve_device(device)), weights, random_weights)
    with _cache_lock:
        if key not in _targets:
            _targets[key] = T.load_target(model, device, weights, random_weights)
        return _targets[key]


def _prior_file_identity(name: Optional[str], prior_file: Optional[str]) -> Optional[tuple]:
    """The file a prior would load from, as (path, size, mtime, inode): a replaced or damaged file (or another
    demo-prior folder) is loaded, and so checked, again rather than served from the cache."""
    path = prior_file
    if path is None:
        try:
            spec = P.get_spec(name or P.default_prior_name())
        except UserError:
            return None  # load_prior says why
        path = spec.file or (spec.weights is not None and W.find(spec.weights)) or None
    try:
        st = os.stat(path)
    except (OSError, TypeError):
        return None
    return str(path), st.st_size, st.st_mtime_ns, st.st_ino


def get_prior(name: Optional[str], prior_file: Optional[str] = None, device: str = "cpu") -> P.Prior:
    key = (name or P.default_prior_name() if not prior_file else name, prior_file, str(T.resolve_device(device)),
           _prior_file_identity(name, prior_file))
    with _cache_lock:
        if key not in _priors:
            _priors[key] = P.load_prior(name, prior_file, T.resolve_device(device))
        return _priors[key]


def clear_caches() -> None:
    with _cache_lock:
        _targets.clear()
        _priors.clear()


def visualize(model: Optional[str], units: Sequence[int], layer: Optional[str] = None,
              settings: Optional[Settings] = None, *, seeds: Optional[Sequence[int]] = None, device: str = "cpu",
              model_weights: Optional[str] = None, prior_file: Optional[str] = None, random_weights: bool = False,
              callback=None, preview_every: int = 0, target: Optional[T.Target] = None,
              prior: Optional[P.Prior] = None) -> list[UnitResult]:
    """Render every unit in `units` (one per seed in `seeds` if given, else all with settings.seed) in one batch:
    `run(resolve(Request(...)))`. All input is checked before any work starts; a bad unit, layer, model or prior
    raises UserError."""
    s = settings or Settings()
    if target is not None:  # a loaded network: the request is what it is
        model, device = target.name, str(target.device)
        model_weights, random_weights = target.weights_path, target.weights_path is None and bool(target.spec.weights)
    if prior is not None and s.method == "dgnam":  # a loaded prior: resolved from its own file and name
        prior_file = prior.path
        s = replace(s, prior=prior.name if prior.name in P.all_specs() else None)
    req = Request(model, list(units), layer, s, None if seeds is None else list(seeds), model_weights, prior_file,
                  random_weights, device)
    return run(resolve(req), callback=callback, preview_every=preview_every, target=target, prior=prior)


def run(r: Run, *, callback=None, preview_every: int = 0, target: Optional[T.Target] = None,
        prior: Optional[P.Prior] = None) -> list[UnitResult]:
    """Run a resolved request in one batch; each result carries the identity of `r` (store.identify)."""
    s, req = r.settings, r.request
    units, seeds = list(r.units), list(r.seeds)
    tgt = target or get_target(r.model, r.device, req.model_weights, req.random_weights)
    combined = None
    if r.terms:
        objectives.validate(tgt, list(r.terms))
        combined = objectives.SumObjective(tuple(r.terms))
    info = tgt.layer(r.layer)
    if s.position is not None and info.kind != "conv":
        raise UserError(f"a position is for convolutional layers; {info.name} of {tgt.name} has no rows and "
                        "columns")
    for u in units:
        tgt.check_unit(info, u, s.position)
    rf = receptive_field(tgt, info, s.position or info.centre()) if info.kind == "conv" else None
    n, lr0, lr1 = r.n_iters, r.lr_start, r.lr_end
    start, alphas = None, None
    if r.method == "maco":
        mres = maco.run(tgt, info, units, seeds=seeds, n_iters=n, lr=lr0, position=s.position, callback=callback,
                        preview_every=preview_every, objective=combined, accel=r.accel)
        res, alphas = mres.batch, mres.alpha
        prior_name, prior_kind, pfile = "maco", "none", None
    elif r.method == "pixel":
        res = pixel_am.run(tgt, info, units, seeds=seeds, n_iters=n, lr_start=lr0, lr_end=lr1,
                           position=s.position, callback=callback, preview_every=preview_every, objective=combined,
                           accel=r.accel)
        prior_name, prior_kind, pfile = "pixel", "none", None
    else:
        # the prior as asked: a prior file need not be one of the registered priors
        pr = prior or get_prior(s.prior if req.prior_file else r.prior, req.prior_file, r.device)
        if pr.lower.device != tgt.device:
            pr = pr.to(tgt.device)
        init = None
        if s.init_image is not None:
            start = _photo_start(pr, s.init_image, r.device)
            init = start.code.unsqueeze(0).expand(len(units), *start.code.shape).clone()
        res = dgnam.run(pr.generator, tgt, info, units, lower=pr.lower, upper=pr.upper, seeds=seeds, n_iters=n,
                        lr_start=lr0, lr_end=lr1, decay=s.decay, position=s.position, init_codes=init,
                        callback=callback, preview_every=preview_every, accel=r.accel, objective=combined,
                        views=s.views, bn_weight=s.bn_weight)
        prior_name, prior_kind, pfile = pr.name, pr.spec.kind, pr.path
    _check_finite(tgt, info, units, res.activations)
    images = to_uint8(res.images)
    per_unit = res.seconds / len(units)
    extra, photo, recon = {}, None, None
    if rf is not None:
        extra["position"] = list(s.position or info.centre())
        extra["receptive_field"] = list(rf)  # top, left, bottom, right in the picture's pixels
    if start is not None:
        photo, recon, measures = _photo_measures(start, pr, tgt, seeds[0])
        extra.update(init_image=str(s.init_image), **measures)
    term_rows = _term_report(tgt, list(r.terms), res.images) if r.terms else None
    idents = r.identities()
    out = []
    for j, u in enumerate(units):
        curve = [float(v) for v in res.activations[:, j]]
        label = tgt.unit_label(info, u)
        more = dict(extra)
        if r.terms:
            label = combined.describe(tgt)
            more.update(objective=s.objective, terms=term_rows[j])
        out.append(UnitResult(
            model=tgt.name, layer=info.name, unit=u, label=label, prior=prior_name,
            prior_kind=prior_kind, seed=seeds[j], n_iters=n, lr_start=float(lr0), lr_end=float(lr1),
            activation_start=curve[0], activation_final=curve[-1], activations=curve, image=images[j],
            seconds=per_unit, device=str(tgt.device), weights=tgt.weights_path, prior_file=pfile,
            extra=more, photo=photo, reconstruction=recon, identity=idents[j],
            alpha=None if alphas is None else (alphas[j].numpy() * 255 + 0.5).astype(np.uint8),
            cpu_threads=res.cpu_threads))
    return out


def _check_finite(tgt: T.Target, info, units: Sequence[int], activations: torch.Tensor) -> None:
    """A NaN (or infinite) activation is the network's doing, not a result: say so before anything is stored
    (the store would refuse the row and read as damaged)."""
    bad = ~torch.isfinite(torch.as_tensor(activations, dtype=torch.float64)).all(dim=0)
    if bool(bad.any()):
        u = units[int(bad.nonzero()[0])]
        raise UserError(f"the network gives NaN for this picture: {tgt.name} {info.name} unit {u} has no finite "
                        f"activation (damaged weights, or an input mean/std far off); nothing was stored")


@torch.no_grad()
def _term_report(tgt: T.Target, terms: list, images: torch.Tensor) -> list[list[dict]]:
    """Per picture, each term of a combined objective with its activation in that picture (as saved)."""
    acts = objectives.term_activations(tgt, tgt.rgb_to_gen(images.to(tgt.device)), terms).cpu()
    return [[{"unit": t.unit, "layer": tgt.layer(t.layer).name, "position": list(t.position) if t.position else None,
              "weight": t.weight, "label": t.describe(tgt), "activation": float(acts[j, i])}
             for i, t in enumerate(terms)] for j in range(acts.shape[0])]


@torch.no_grad()
def photo_views(model: str, prior_name: Optional[str], init_image: str, layer: Optional[str], unit: int,
                position: Optional[tuple[int, int]] = None, device: str = "cpu") -> dict:
    """For a card: the photo and its reconstruction G(E(photo)) as the target sees them, with the unit's activation
    in each (the reconstruction is the picture a photo start begins from)."""
    tgt = get_target(model, device)
    pr = get_prior(prior_name, None, device)
    start = _photo_start(pr, init_image, device)
    photo, recon, measures = _photo_measures(start, pr, tgt, 0)
    info = tgt.layer(layer)
    u = torch.as_tensor([unit], device=tgt.device)
    acts = [float(tgt.unit_activations(tgt.rgb_to_gen(from_uint8(im).to(tgt.device)), info, u, position)[0])
            for im in (photo, recon)]
    return {"photo": photo, "reconstruction": recon, "photo_activation": acts[0],
            "reconstruction_activation": acts[1], **measures}


def _photo_start(pr: P.Prior, path: str, device: str) -> photo_init.PhotoStart:
    model, _ = photo_init.encoder_of(pr)
    encoder = get_target(model, device)
    return photo_init.encode_photo(pr, encoder, read_photo(path))


@torch.no_grad()
def _photo_measures(start: photo_init.PhotoStart, pr: P.Prior, tgt: T.Target, seed: int):
    """The photo and its reconstruction as the target sees them, and how far a photo start and a random start are
    from the photo at step 0 (mean absolute pixel error in [0, 1])."""
    recon = pr.generator(start.code.unsqueeze(0)).float()
    rand = pr.generator(dgnam.initial_codes([seed], pr.lower.shape).to(pr.lower.device)).float()
    photo_view = start.photo_gen.float()  # at the generator's output size, like recon
    measures = {"start_pixel_error": photo_init.pixel_error(recon, photo_view, tgt),
                "random_start_pixel_error": photo_init.pixel_error(rand, photo_view, tgt)}
    photo_img = to_uint8(gen_to_rgb(tgt.crop(photo_view)).cpu())[0]
    recon_img = to_uint8(gen_to_rgb(tgt.crop(recon)).cpu())[0]
    return photo_img, recon_img, measures


def top_classes(target: T.Target, image: np.ndarray, k: int = 5) -> list[tuple[int, str, float]]:
    """The target's top-k ImageNet classes for an RGB uint8 image (only for 1000-class outputs)."""
    from .imagenet import class_names

    rgb = from_uint8(image)
    probs = target.classify(rgb)[0].cpu()
    if probs.numel() != 1000:
        return []
    vals, idx = probs.topk(k)
    names = class_names()
    return [(int(i), names[int(i)], float(v)) for v, i in zip(vals, idx)]
