"""Files from the Hugging Face Hub, into the Hub's own cache, through the bounded transfer of `http_download`.

The protocol is the Hub's resolve endpoint as huggingface_hub speaks it: `HEAD {endpoint}/{repo}/resolve/main/{file}`
(no automatic redirects to other hosts) answers with the commit (X-Repo-Commit), the content's ETag (X-Linked-Etag
for large files: the sha256 of the content; ETag: the git blob id of small ones), the size (X-Linked-Size or
Content-Length) and, for large files, a Location on a download host. The bytes are then GET from there.

The cache is huggingface_hub's layout, so it (and every tool on it) finds the file offline:
`models--{owner}--{name}/blobs/{etag}`, `snapshots/{commit}/{file}` -> `../../blobs/{etag}`, `refs/main` = commit.
A blob appears only once its content matches the ETag; nothing is written before.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .files import publish
from .numbers import is_whole
from .http_download import Clock, DownloadFailed, Limits, Progress, host_of, open_url, transfer

SHA256 = re.compile(r"[0-9a-f]{64}")
GIT_SHA1 = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubFile:
    commit: str
    etag: str
    size: Optional[int]
    location: str  # where the bytes are


def _headers(url: str, endpoint: str) -> dict:
    """The Hub's headers: a user agent and the token of HF_TOKEN or `hf auth login` (unless implicit tokens are
    off). Not huggingface_hub's build_hf_headers: its user agent asks the Hub for a registry on first use, a
    request of its own with no overall deadline (a server dripping headers held `fetch` for minutes)."""
    import platform

    import huggingface_hub
    from huggingface_hub import constants, get_token

    headers = {"user-agent": f"dgnam-studio; hf_hub/{huggingface_hub.__version__}; "
                             f"python/{platform.python_version()}"}
    token = None if constants.HF_HUB_DISABLE_IMPLICIT_TOKEN else get_token()
    if token:
        headers["authorization"] = f"Bearer {token}"
    if host_of(url) != host_of(endpoint):  # a download host: its addresses are signed, a token would be refused
        headers.pop("authorization", None)
        headers.pop("Authorization", None)
    headers["Accept-Encoding"] = "identity"  # the real size, not a compressed one
    return headers


def metadata(url: str, endpoint: str, clock: Clock) -> HubFile:
    """What the Hub says about the file at `url` (one HEAD; relative redirects of renamed repos followed)."""
    resp = open_url("HEAD", url, _headers(url, endpoint), clock, stop_at_other_host=True)
    with resp:
        h = resp.headers
        commit = h.get("X-Repo-Commit")
        etag = (h.get("X-Linked-Etag") or h.get("ETag") or "").removeprefix("W/").strip('"')
        size = h.get("X-Linked-Size") or (None if 300 <= resp.status < 400 else h.get("Content-Length"))
        location = h.get("Location") if 300 <= resp.status < 400 else resp.url
    if not commit or not etag:
        raise DownloadFailed("the server's answer lacks the Hub's X-Repo-Commit or ETag header (is HF_ENDPOINT a "
                             "Hugging Face Hub?)")
    if any("/" in v or "\\" in v or v.startswith(".") for v in (etag, commit)):
        raise DownloadFailed(f"the server's ETag {etag!r} or commit {commit!r} is not a plain name")
    return HubFile(commit, etag, int(size) if size and is_whole(size) else None, location or url)


def repo_folder(cache: Path, repo: str) -> Path:
    return cache / ("models--" + repo.replace("/", "--"))


def content_matches(etag: str, size: int, sha256: str, path: Path) -> bool:
    """Whether the content is what the Hub published: its sha256 for large (LFS) files, its git blob id for
    small ones; an ETag of another form (none so far) cannot be checked and passes on its size alone."""
    if SHA256.fullmatch(etag):
        return sha256 == etag
    if GIT_SHA1.fullmatch(etag):
        h = hashlib.sha1(b"blob %d\0" % size)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return h.hexdigest() == etag
    return True


def download(repo: str, filename: str, endpoint: str, cache: Path, limits: Limits,
             progress: Optional[Progress] = None, cancel: Optional[threading.Event] = None) -> Path:
    """Download `filename` of `repo` (revision main) into the Hub cache `cache`; returns its snapshot path. A blob
    already there under the same ETag is replaced (callers only come here for a missing or damaged copy)."""
    url = f"{endpoint}/{repo}/resolve/main/{filename}"
    with Clock(limits) as clock:
        meta = metadata(url, endpoint, clock)
        folder = repo_folder(cache, repo)
        blobs = folder / "blobs"
        blobs.mkdir(parents=True, exist_ok=True)
        tmp = blobs / f".{meta.etag}.{os.getpid()}.{uuid.uuid4().hex[:8]}.dgnam-part"  # our own name, removed by it
        try:
            with open(tmp, "wb") as out:
                got = transfer(meta.location, _headers(meta.location, endpoint), out, clock, progress, cancel,
                               meta.size)
            if meta.size is not None and got.size != meta.size:
                raise DownloadFailed(f"the file arrived with {got.size} bytes where the Hub published {meta.size}")
            if not content_matches(meta.etag, got.size, got.sha256, tmp):
                raise DownloadFailed(f"the content that arrived does not match the hash the Hub published for it "
                                     f"(ETag {meta.etag[:16]}…, got sha256 {got.sha256[:16]}…): it was refused, "
                                     f"nothing was kept")
            publish(tmp, blobs / meta.etag)
        finally:
            tmp.unlink(missing_ok=True)
    snapshot = folder / "snapshots" / meta.commit / filename
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    _link(snapshot, Path(os.path.relpath(blobs / meta.etag, snapshot.parent)), blobs / meta.etag)
    refs = folder / "refs"
    refs.mkdir(exist_ok=True)
    _write_atomically(refs / "main", meta.commit)  # no newline, as huggingface_hub writes it
    return snapshot


def _link(snapshot: Path, relative: Path, blob: Path) -> None:
    """snapshot -> blob as a relative symlink, replacing what is there in one step (a copy where the file system
    has no symlinks, as huggingface_hub does)."""
    tmp = snapshot.with_name(f".{snapshot.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.dgnam-link")
    try:
        try:
            os.symlink(relative, tmp)
        except OSError:
            import shutil

            shutil.copyfile(blob, tmp)
        os.replace(tmp, snapshot)
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.dgnam-part")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_damage(snapshot: Path) -> Optional[str]:
    """Why a cached Hub file is damaged, or None: its blob is named by the ETag the Hub published, so a large
    file's content must have that sha256 (small files' git ids are checked the same way)."""
    blob = snapshot.resolve()
    etag = blob.name
    if not (SHA256.fullmatch(etag) or GIT_SHA1.fullmatch(etag)):
        return None
    size = blob.stat().st_size
    h = hashlib.sha256()
    with open(blob, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    if content_matches(etag, size, h.hexdigest(), blob):
        return None
    return f"its content does not match the hash the Hub published for it ({etag[:16]}…)"
