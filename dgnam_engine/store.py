"""The results store: one SQLite database plus one PNG per result under a data folder.

A result is keyed by everything that determines it (model and weights identity, layer, unit, prior identity,
settings, seed), so a result computed once is found again at once by every front end (dashboard, precompute).
Writes are atomic: the PNG appears under its final name only when complete, and its row is inserted in one
transaction afterwards, so a reader never sees a row without its image. WAL mode and a busy timeout let several
threads and processes read and write at the same time.
"""
from __future__ import annotations

import hashlib
import contextlib
import errno
import io
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence
from urllib.parse import quote

import numpy as np

from .errors import UserError
from .imaging import png_bytes

log = logging.getLogger(__name__)

APP_NAME = "dgnam-studio"
ENV_DATA_DIR = "DGNAM_DATA_DIR"
KEY_VERSION = 3  # bump when the meaning of a result changes, so old rows are not reused (2: content hashes;
# 3: the resolved request, learning rates and a photo start's 30 steps included)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    weights_id TEXT NOT NULL,
    layer TEXT NOT NULL,
    unit INTEGER NOT NULL,
    label TEXT NOT NULL,
    prior TEXT NOT NULL,
    prior_kind TEXT NOT NULL,
    seed INTEGER NOT NULL,
    settings TEXT NOT NULL,
    activation_start REAL NOT NULL,
    activation_final REAL NOT NULL,
    activations TEXT NOT NULL,
    seconds REAL NOT NULL,
    device TEXT NOT NULL,
    image TEXT NOT NULL,
    created REAL NOT NULL,
    sha256 TEXT,
    extra TEXT
);
CREATE INDEX IF NOT EXISTS results_unit ON results (model, layer, unit);
CREATE INDEX IF NOT EXISTS results_prior ON results (prior);
"""


def default_root() -> Path:
    """$DGNAM_DATA_DIR, else the user's data folder (e.g. ~/.local/share/dgnam-studio)."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME))


def file_identity(path: Optional[str | os.PathLike]) -> str:
    """A weights or prior file's identity: its name and the sha256 of its content (so two different files of the
    same name and size never share results); "random" for no file."""
    if path is None:
        return "random"
    p = Path(path)
    digest = content_hash(p)
    return f"{p.name}:{digest[:32]}" if digest else f"{p.name}:missing"


_hash_memo: dict[tuple, str] = {}
_hash_lock = threading.Lock()


def _hash_cache_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME)) / "file_hashes.json"


def content_hash(path: str | os.PathLike) -> Optional[str]:
    """sha256 of a file, computed once and remembered by (path, size, mtime) in this process and in a small JSON
    file in the user cache folder, so a large checkpoint is not read again on every run. None for no such file.
    A cache that cannot be read or written only costs the hashing again."""
    p = Path(path)
    try:
        st = p.stat()
        real = str(p.resolve())
    except OSError:
        return None
    stamp = (real, st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if stamp in _hash_memo:
            return _hash_memo[stamp]
    cache_file = _hash_cache_path()
    cache = _read_hash_cache(cache_file)
    entry = cache.get(real)
    if isinstance(entry, dict) and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
        digest = str(entry.get("sha256"))
    else:
        h = hashlib.sha256()
        try:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            return None
        digest = h.hexdigest()
        cache[real] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
        _write_hash_cache(cache_file, cache)
    with _hash_lock:
        _hash_memo[stamp] = digest
    return digest


def _read_hash_cache(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_hash_cache(path: Path, cache: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.part")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)
    except OSError:
        log.debug("cannot write the file hash cache %s", path, exc_info=True)


def key_for(model: str, weights_id: str, layer: str, unit: int, prior_id: str, settings: dict,
            seed: int) -> str:
    """A stable hex key of everything that determines a result. `settings` must be JSON-serialisable."""
    payload = {"v": KEY_VERSION, "model": model, "weights": weights_id, "layer": layer, "unit": int(unit),
               "prior": prior_id, "settings": settings, "seed": int(seed)}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Identity:
    """What a runner request resolves to before anything is loaded: its key and the parts of that key."""

    key: str
    weights_id: str
    prior_id: str
    settings: dict  # the request's settings with the defaults filled in (no seed: it is keyed on its own)


def identify(run: Any, unit: int, seed: int) -> Identity:
    """The key of one (unit, seed) of a resolved run (request.Run): a hash of everything the run resolved to,
    the device and precision it really uses included ("cpu bfloat16", not "auto"). Resolving loads no model, so
    a stored result can be shown before any work."""
    settings = run.key_settings()
    key = key_for(run.model, run.weights_id, run.layer, unit, run.prior_id, settings, seed)
    return Identity(key, run.weights_id, run.prior_id, settings)


def alpha_name(image_name: str) -> str:
    """The alpha map's file beside a picture (MACO): `<key>_alpha.png` next to `<key>.png`."""
    return image_name[:-4] + "_alpha.png" if image_name.endswith(".png") else image_name + "_alpha.png"


@dataclass
class StoredResult:
    key: str
    model: str
    weights_id: str
    layer: str
    unit: int
    label: str
    prior: str
    prior_kind: str
    seed: int
    settings: dict
    activation_start: float
    activation_final: float
    activations: list[float]
    seconds: float
    device: str
    image_path: Path
    created: float

    checksum: Optional[str] = None  # sha256 of the PNG; None for rows stored before checksums
    shipped: bool = False  # from an atlas that ships with the project (read-only, assets/atlas)
    extra: dict = field(default_factory=dict)  # what the run computed besides the picture (UnitResult.extra)

    def png(self) -> bytes:
        return self.image_path.read_bytes()

    @property
    def alpha_path(self) -> Optional[Path]:
        """The alpha map stored beside the picture (MACO results), or None."""
        p = self.image_path.with_name(alpha_name(self.image_path.name))
        return p if p.is_file() else None

    def summary(self) -> dict:
        """Everything but the image, as plain JSON-ready values."""
        return {"key": self.key, "model": self.model, "weights": self.weights_id, "layer": self.layer,
                "unit": self.unit, "label": self.label, "prior": self.prior, "prior_kind": self.prior_kind,
                "seed": self.seed, "settings": self.settings, "activation_start": self.activation_start,
                "activation_final": self.activation_final, "activations": self.activations,
                "seconds": self.seconds, "device": self.device, "image": self.image_path.name,
                "created": self.created, "extra": self.extra}


_COLUMNS = ("key", "model", "weights_id", "layer", "unit", "label", "prior", "prior_kind", "seed", "settings",
            "activation_start", "activation_final", "activations", "seconds", "device", "image", "created", "sha256",
            "extra")


_HEX = re.compile(r"[0-9a-f]+")
_TEXT_COLUMNS = ("model", "weights_id", "layer", "label", "prior", "prior_kind", "device")


def _safe(r, col: str):
    try:
        v = r[col]
    except (KeyError, IndexError):
        return None
    return v if isinstance(v, (int, float)) else str(v)[:80] if v is not None else None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _extra(r) -> dict:
    """What the run computed besides the picture (UnitResult.extra); {} for rows from before it was kept, for
    atlas rows, and for a value that is not a JSON object."""
    try:
        v = json.loads(r["extra"]) if "extra" in r.keys() and r["extra"] else {}
    except (TypeError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def row_problem(r, image_suffix: str = ".png", checksum_required: bool = False) -> Optional[str]:
    """Why a stored row may not be served (a value of the wrong kind, out of range, or not parseable), or None.
    The picture's name must be the key's own, so a damaged row can never point at another file."""
    try:
        key = r["key"]
        if not (isinstance(key, str) and len(key) == 32 and _HEX.fullmatch(key)):
            return "bad key"
        for col in _TEXT_COLUMNS:
            v = r[col]
            if not isinstance(v, str) or not v or not v.isprintable():
                return f"bad {col}"
        for col in ("unit", "seed"):
            if not isinstance(r[col], int) or r[col] < 0:
                return f"bad {col}"
        for col in ("activation_start", "activation_final", "seconds", "created"):
            if not _number(r[col]):
                return f"bad {col}"
        if r["seconds"] < 0 or r["created"] <= 0:
            return "bad time"
        try:
            settings, curve = json.loads(r["settings"]), json.loads(r["activations"])
        except (TypeError, ValueError):
            return "settings or activations are not JSON"
        if not isinstance(settings, dict):
            return "bad settings"
        if not isinstance(curve, list) or not all(_number(a) for a in curve):
            return "bad activations"
        if r["image"] != f"{key}{image_suffix}":
            return "bad picture name"
        digest = r["sha256"] if "sha256" in r.keys() else None
        if digest is None and not checksum_required:
            return None
        if not (isinstance(digest, str) and len(digest) == 64 and _HEX.fullmatch(digest)):
            return "bad checksum"
    except (KeyError, IndexError, TypeError) as exc:
        return f"unreadable row ({exc})"
    return None


class StoreError(UserError):
    """The data folder or its database cannot be used; the message names the folder and what to do."""


class ActivationNotFinite(UserError, ValueError):
    """A result whose activation is NaN or infinite: refused before anything is written (one line on the CLI)."""


def read_only_message(root: Path, what: str = "results folder") -> str:
    return (f"the {what} {root} is read-only: stored results can be browsed but nothing new can be saved; "
            f"fix its permissions or choose another folder with {ENV_DATA_DIR}")


def full_disk_message(folder: Path, what: str = "the results") -> str:
    return (f"the disk holding {folder} is full: {what} could not be saved (nothing stored before was lost); free "
            f"some space and run the same command again, or choose another folder with {ENV_DATA_DIR}")


FULL_DISK_BYTES = 1 << 20  # an I/O error with less room than this left is taken for a full disk


def is_full_disk(exc: BaseException, folder: Optional[Path] = None) -> bool:
    """Whether a failed write means the disk is full: ENOSPC, SQLite's "disk is full", or SQLite's "disk I/O error"
    (what it says when its WAL index cannot grow) on a disk with next to no room left."""
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "disk is full" in str(exc):
        return True
    if folder is not None and "disk I/O error" in str(exc):
        try:
            st = os.statvfs(folder)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize < FULL_DISK_BYTES
    return False


def damaged_message(db_path: Path, reason: str) -> str:
    return (f"the results database {db_path} is damaged ({reason}): run `python -m dgnam_engine store check "
            f"--repair` to keep what is readable and set the rest aside, or choose another folder with "
            f"{ENV_DATA_DIR}")


def picture_problem(path: Path, checksum: Optional[str]) -> Optional[str]:
    """Why a stored picture cannot be served (missing, checksum differs, does not decode), or None if it is good.
    Rows from before checksums are checked by decoding the whole picture."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError) as exc:
        return f"unreadable ({getattr(exc, 'strerror', None) or exc})"
    return bytes_problem(data, checksum)


def bytes_problem(data: bytes, checksum: Optional[str]) -> Optional[str]:
    """Why a stored picture's bytes cannot be served (checksum differs, does not decode), or None."""
    if checksum:
        return None if hashlib.sha256(data).hexdigest() == checksum else "its content differs from the checksum"
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.width < 1 or im.height < 1 or im.mode not in ("RGB", "RGBA", "L", "P"):
                return f"unexpected picture ({im.mode} {im.width}x{im.height})"
    except Exception as exc:  # PIL raises many kinds for a damaged file
        return f"does not decode as a PNG ({type(exc).__name__})"
    return None


def connect_read_only(db_path: Path) -> sqlite3.Connection:
    """A read-only connection that works in a folder nobody may write to: WAL readers normally create side files,
    so fall back to opening the file as immutable when that fails."""
    base = f"file:{quote(str(db_path.resolve()))}"
    con = sqlite3.connect(f"{base}?mode=ro", uri=True, timeout=30.0, isolation_level=None)
    try:
        con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        con.close()
        con = sqlite3.connect(f"{base}?mode=ro&immutable=1", uri=True, timeout=30.0, isolation_level=None)
    except BaseException:
        con.close()  # a connection left open would keep WAL side files next to a damaged database
        raise
    con.row_factory = sqlite3.Row
    return con


# The store's own temporary pictures: ".KEY.PID.HEX.part" in its images folder, nothing else; and ".KEY.HEX.part"
# of older versions, which named no writer (taken for abandoned after an hour).
_PART = re.compile(r"\.([0-9a-f]{32})\.([0-9]{1,10})\.([0-9a-f]{32})\.part")
_OLD_PART = re.compile(r"\.([0-9a-f]{32})\.([0-9a-f]{32})\.part")
OLD_PART_S = 3600.0


def part_name(key: str) -> str:
    """A picture's temporary name while it is written: unique, and naming its writer so a killed one's is cleaned."""
    return f".{key}.{os.getpid()}.{uuid.uuid4().hex}.part"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def own_parts(images: Path) -> list[Path]:
    """The store's temporary pictures in its images folder (only names it makes, matched exactly)."""
    try:
        return [p for p in images.iterdir() if (_PART.fullmatch(p.name) or _OLD_PART.fullmatch(p.name))
                and p.is_file() and not p.is_symlink()]
    except OSError:
        return []


def remove_dead_parts(images: Path) -> list[Path]:
    """Delete the store's temporary pictures whose writer is gone (killed mid-write). Returns what was removed."""
    removed = []
    for p in own_parts(images):
        m = _PART.fullmatch(p.name)
        try:
            dead = not _pid_alive(int(m.group(2))) if m else time.time() - p.stat().st_mtime > OLD_PART_S
        except OSError:
            continue
        if dead:
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                continue
    return removed


def _is_busy(exc: sqlite3.Error) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


class ResultsStore:
    """Results under `root`. Opening checks the folder: a file instead of a folder, a folder that cannot be created
    or a damaged database raise StoreError; a read-only folder opens read-only (browsing works, put raises)."""

    def __init__(self, root: Optional[str | os.PathLike] = None, atlases: Sequence = ()):
        """`atlases`: the shipped atlases served as read-only results (atlas.all_atlases(); anything with a
        `folder` and `rows(where, args)`). The store knows no atlas of its own: its callers choose."""
        self.atlases = list(atlases)
        self.root = Path(root) if root is not None else default_root()
        self.images = self.root / "images"
        self.damaged = self.images / "damaged"
        self.db_path = self.root / "results.sqlite"
        self._problems: list[dict] = []
        self._reported: set[str] = set()
        self._verified: set[tuple] = set()
        self._lock = threading.Lock()
        self._open_folder()
        if self.read_only:
            if not self.db_path.is_file():
                raise StoreError(f"the results folder {self.root} is read-only and holds no results database; "
                                 f"fix its permissions or choose another folder with {ENV_DATA_DIR}")
            with self._db() as con:  # a damaged database is reported now, not on the first page
                con.execute("SELECT COUNT(*) FROM results").fetchone()
        else:
            remove_dead_parts(self.images)
            self._create()

    def _open_folder(self) -> None:
        for p in (self.root, self.images):
            if p.exists() and not p.is_dir():
                raise StoreError(f"the data folder {p} is a file, not a folder: point {ENV_DATA_DIR} at a folder "
                                 "(or move the file away)")
        try:
            self.images.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if not self.root.is_dir():
                raise StoreError(f"cannot create the data folder {self.root} ({exc.strerror or exc}): choose "
                                 f"another folder with {ENV_DATA_DIR} or fix the permissions") from None
        writable = os.access(self.root, os.W_OK | os.X_OK)
        if writable and self.db_path.exists():
            writable = os.access(self.db_path, os.W_OK)
        self.read_only = not writable
        self.images_writable = self.images.is_dir() and os.access(self.images, os.W_OK | os.X_OK)
        if self.db_path.exists() and not self.db_path.is_file():
            raise StoreError(damaged_message(self.db_path, "it is not a file"))
        if (self.db_path.is_file() and self.db_path.stat().st_size == 0 and self.images.is_dir()
                and any(self.images.glob("*.png"))):
            # SQLite would take an empty file for a new database and the pictures would lose their rows
            raise StoreError(damaged_message(self.db_path, "the file is empty but pictures are stored"))

    def _create(self, wait_s: float = 30.0) -> None:
        """WAL mode (persistent: readers never block the writer) and the table. Switching to WAL takes an
        exclusive lock without waiting on the busy timeout, so two processes opening a new store at once
        (the dashboard and a worker, say) would see "database is locked": retry instead."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with self._db() as con:
                    if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        con.execute("PRAGMA journal_mode=WAL")
                    con.executescript(_SCHEMA)
                    cols = {r[1] for r in con.execute("PRAGMA table_info(results)")}
                    if "sha256" not in cols:  # a store from before checksums: its rows are checked by decoding
                        con.execute("ALTER TABLE results ADD COLUMN sha256 TEXT")
                    if "extra" not in cols:  # a store from before results kept what the run computed
                        con.execute("ALTER TABLE results ADD COLUMN extra TEXT")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise self._error(exc) from None
                if time.monotonic() > deadline:
                    raise StoreError(f"the results database {self.db_path} stays locked: {exc}") from None
            time.sleep(0.02)

    def _connect(self) -> sqlite3.Connection:
        # One short-lived connection per call: safe across threads and processes.
        if self.read_only:
            return connect_read_only(self.db_path)
        con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout=30000")
        con.row_factory = sqlite3.Row
        return con

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """A connection whose failures become one StoreError line; "locked" passes through for the retry above."""
        try:
            con = self._connect()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            yield con
        except sqlite3.DatabaseError as exc:
            if _is_busy(exc):
                raise
            raise self._error(exc) from None
        finally:
            con.close()

    def _error(self, exc: sqlite3.Error) -> StoreError:
        msg = str(exc).strip() or type(exc).__name__
        if is_full_disk(exc, self.root):
            return StoreError(full_disk_message(self.root))
        if "readonly" in msg or "read-only" in msg:
            return StoreError(read_only_message(self.root))
        if "unable to open" in msg:
            return StoreError(f"cannot open the results database {self.db_path} ({msg}): fix the permissions of "
                              f"{self.root} or choose another folder with {ENV_DATA_DIR}")
        return StoreError(damaged_message(self.db_path, msg))

    def _row(self, r, folder: Optional[Path] = None) -> Optional[StoredResult]:
        """A row as a result, or None when one of its values is damaged (then it is set aside: reported once,
        never served). `folder`: the shipped atlas the row comes from (None: this store)."""
        why = row_problem(r, ".webp" if folder is not None else ".png", checksum_required=folder is not None)
        if why is not None:
            self._bad_row(r, why, folder)
            return None
        return StoredResult(
            key=r["key"], model=r["model"], weights_id=r["weights_id"], layer=r["layer"], unit=r["unit"],
            label=r["label"], prior=r["prior"], prior_kind=r["prior_kind"], seed=r["seed"],
            settings=json.loads(r["settings"]), activation_start=float(r["activation_start"]),
            activation_final=float(r["activation_final"]), activations=[float(a) for a in json.loads(r["activations"])],
            seconds=float(r["seconds"]), device=r["device"], image_path=(folder or self.images) / r["image"],
            created=float(r["created"]), checksum=r["sha256"] if "sha256" in r.keys() else None,
            shipped=folder is not None, extra=_extra(r))

    def _bad_row(self, r, why: str, folder: Optional[Path]) -> None:
        where = f"the shipped atlas {folder}" if folder is not None else f"the results database {self.db_path}"
        ident = f"{folder}:{_safe(r, 'key')}" if folder is not None else f"row:{_safe(r, 'key')}"
        with self._lock:
            if ident in self._reported:
                return
            self._reported.add(ident)
        log.warning("damaged result in %s (%s unit %s): %s; not served (%s)", where, _safe(r, "model"),
                    _safe(r, "unit"), why, "reinstall the project to restore it" if folder is not None else
                    "`python -m dgnam_engine store check --repair` removes it, it is rendered again when asked for")
        with self._lock:
            self._problems.append({"key": _safe(r, "key"), "model": _safe(r, "model"), "layer": _safe(r, "layer"),
                                   "unit": _safe(r, "unit"), "image": None, "reason": f"damaged values: {why}",
                                   "moved_to": None})

    def _shipped(self, where: str, args: tuple, good=None) -> list[StoredResult]:
        """Good results of the shipped atlases matching an SQL condition (entries that fail their checksum or
        hold a damaged value are set aside by the atlas and here); `good` decides which pictures may be served
        (default: checked now, as `_good` does)."""
        good = good or self._good
        out = []
        for a in self.atlases:
            try:
                rows = a.rows(where, args)
            except (sqlite3.Error, ValueError, OSError, UserError) as exc:
                with self._lock:
                    first = f"atlas:{a.folder}" not in self._reported
                    self._reported.add(f"atlas:{a.folder}")
                if first:
                    log.warning("atlas %s cannot be read (%s): reinstall the project to restore it", a.folder, exc)
                continue
            out += [res for res in (self._row(r, a.folder) for r in rows) if res is not None and good(res)]
        return out

    def _present(self, res: StoredResult) -> bool:
        """Whether a picture is there and not already found damaged (its bytes are checked when it is read)."""
        with self._lock:
            if res.key in self._reported:
                return False
        return res.image_path.is_file()

    def _good(self, res: StoredResult) -> bool:
        """Whether a stored picture may be served; a damaged one is reported once and set aside."""
        try:
            st = res.image_path.stat()
        except OSError:
            return False  # deleted by hand (or set aside): compute again
        stamp = (res.image_path.name, st.st_size, st.st_mtime_ns, res.checksum)
        if stamp in self._verified:
            return True
        why = picture_problem(res.image_path, res.checksum)
        if why == "missing":
            return False
        if why is None:
            self._verified.add(stamp)
            if res.checksum is None:
                self._remember_checksum(res)
            return True
        self._set_aside(res, why)
        return False

    def picture_bytes(self, res: StoredResult) -> Optional[bytes]:
        """The picture's bytes, read once and checked (its checksum, or a decode for rows from before checksums),
        for a view that shows what it read; None when it is missing or damaged (then set aside and reported once,
        as the query does). Results from `query(check_pictures=False)` are shown only through this."""
        try:
            data = res.image_path.read_bytes()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self._set_aside(res, f"unreadable ({getattr(exc, 'strerror', None) or exc})")
            return None
        why = bytes_problem(data, res.checksum)
        if why is not None:
            self._set_aside(res, why)
            return None
        return data

    def _remember_checksum(self, res: StoredResult) -> None:
        """An old row that decoded well gets its checksum, so the next check is a hash instead of a decode."""
        if self.read_only:
            return
        try:
            digest = hashlib.sha256(res.image_path.read_bytes()).hexdigest()
            with self._db() as con:
                con.execute("UPDATE results SET sha256 = ? WHERE key = ? AND sha256 IS NULL", (digest, res.key))
        except (OSError, sqlite3.Error, StoreError):
            pass  # only a speed-up

    def _set_aside(self, res: StoredResult, why: str) -> None:
        with self._lock:
            if res.key in self._reported:
                return
            self._reported.add(res.key)
        moved = None
        if self.images_writable and not res.shipped:  # a shipped atlas is part of the install: never moved
            try:
                self.damaged.mkdir(exist_ok=True)
                dest = self.damaged / res.image_path.name
                if dest.exists():
                    dest = self.damaged / f"{res.image_path.stem}.{int(time.time())}.png"
                os.replace(res.image_path, dest)
                moved = dest
            except OSError:
                moved = None
        log.warning("damaged picture %s (%s unit %s): %s; %s", res.image_path, res.model, res.unit, why,
                    f"moved to {moved}, it will be rendered again" if moved else "not served")
        with self._lock:
            self._problems.append({"key": res.key, "model": res.model, "layer": res.layer, "unit": res.unit,
                                   "image": str(res.image_path), "reason": why,
                                   "moved_to": str(moved) if moved else None})

    def problems(self) -> list[dict]:
        """The damaged pictures this store found (each once): key, model, layer, unit, image, reason, moved_to."""
        with self._lock:
            return list(self._problems)

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str) -> Optional[StoredResult]:
        with self._db() as con:
            r = con.execute("SELECT * FROM results WHERE key = ?", (key,)).fetchone()
        if r is None:  # not rendered here: perhaps in a shipped atlas (same key, same request)
            shipped = self._shipped("WHERE key = ?", (key,))
            return shipped[0] if shipped else None
        res = self._row(r)
        return res if res is not None and self._good(res) else None

    def check_writable(self) -> None:
        """Raise StoreError now if nothing could be saved, before any work is done."""
        if self.read_only:
            raise StoreError(read_only_message(self.root))
        if not self.images_writable:
            raise StoreError(read_only_message(self.images, "pictures folder"))

    def check_sound(self) -> None:
        """Raise StoreError if SQLite finds damage (a damaged index page breaks only some statements, and
        would otherwise surface after the work that wants to store its results)."""
        with self._db() as con:
            lines = [r[0] for r in con.execute("PRAGMA quick_check(3)")]
        if lines != ["ok"]:
            raise StoreError(damaged_message(self.db_path, " ".join("; ".join(lines).split())[:200]))

    def put(self, result: Any, key: Optional[str] = None, settings: Optional[dict] = None,
            weights_id: Optional[str] = None) -> StoredResult:
        """Store a runner.UnitResult (or anything with its fields) under `key`; the same key replaces.

        Without `key`, under the identity of the run that made the result (`result.identity`); else pass the
        `Identity` the key came from: `put(r, ident.key, ident.settings, ident.weights_id)`. The steps and
        learning rates the run actually used are added to the settings from the result.
        """
        if key is None:
            key, settings, weights_id = result.identity.key, result.identity.settings, result.identity.weights_id
        image = np.asarray(result.image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("result.image must be an HxWx3 uint8 array")
        bad = next((float(a) for a in (result.activation_start, result.activation_final, *result.activations)
                    if not math.isfinite(float(a))), None)
        if bad is not None:  # SQLite would store NaN as NULL, refuse it, and the database would be called damaged
            raise ActivationNotFinite(f"{result.model} {result.layer} unit {result.unit}: activation is not a finite "
                                      f"number ({bad}), so the unit was not stored; the network gives NaN or "
                                      "infinity here: check its weights and its input mean and std")
        self.check_writable()
        name = f"{key}.png"
        final = self.images / name
        # unique and naming its writer: concurrent writers never share it, and a dead writer's is cleaned up
        tmp = self.images / part_name(key)
        data = png_bytes(image)
        try:
            tmp.write_bytes(data)
            os.replace(tmp, final)
        except OSError as exc:
            if is_full_disk(exc):
                raise StoreError(full_disk_message(self.root)) from None
            raise StoreError(f"cannot save a picture in {self.images} ({exc.strerror or exc}): fix its "
                             f"permissions or free some space, or choose another folder with {ENV_DATA_DIR}") from None
        finally:
            tmp.unlink(missing_ok=True)
        self._put_alpha(result, key)
        settings = dict(settings or {})
        for used in ("n_iters", "lr_start", "lr_end", "cpu_threads"):
            if getattr(result, used, None) is not None:
                settings[used] = getattr(result, used)
        curve = [float(a) for a in result.activations]
        row = (key, result.model, weights_id or file_identity(getattr(result, "weights", None)), result.layer,
               int(result.unit), result.label, result.prior, result.prior_kind, int(result.seed),
               json.dumps(settings, sort_keys=True, default=list), float(result.activation_start),
               float(result.activation_final), json.dumps(curve), float(result.seconds), str(result.device),
               name, time.time(), hashlib.sha256(data).hexdigest(),
               json.dumps(getattr(result, "extra", None) or {}, sort_keys=True, default=list))
        self._insert([row])
        with self._lock:
            self._reported.discard(key)  # a new picture may be reported again if it gets damaged
        return self.get(key)

    def _put_alpha(self, result: Any, key: str) -> None:
        """A MACO result's alpha map beside its picture, written like it (before the row, so a row never lacks
        it); a result without one removes an older map of the same key."""
        final = self.images / alpha_name(f"{key}.png")
        alpha = getattr(result, "alpha", None)
        if alpha is None:
            final.unlink(missing_ok=True)
            return
        tmp = self.images / f".{key}_alpha.{os.getpid()}.{uuid.uuid4().hex}.part"
        try:
            tmp.write_bytes(png_bytes(np.asarray(alpha, dtype=np.uint8)))
            os.replace(tmp, final)
        except OSError as exc:
            raise StoreError(f"cannot save a picture in {self.images} ({exc.strerror or exc}): fix its "
                             f"permissions or free some space, or choose another folder with {ENV_DATA_DIR}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def _insert(self, rows: list[tuple]) -> None:
        sql = f"INSERT OR REPLACE INTO results ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})"
        with self._db() as con:
            try:
                con.execute("BEGIN IMMEDIATE")
                con.executemany(sql, rows)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise

    def query(self, model: Optional[str] = None, layer: Optional[str] = None, prior: Optional[str] = None,
              unit: Optional[int] = None, limit: Optional[int] = None, shipped: bool = True,
              check_pictures: bool = True) -> list[StoredResult]:
        """Stored results with a good picture matching every given field, newest first; with `shipped`, also the
        shipped atlases' results that were not rendered here under the same key.

        Without `check_pictures` the rows are checked but the pictures only found present: for a view of a few of
        many (a grid page), which reads each picture it shows through `picture_bytes`."""
        where, args = [], []
        for col, val in (("model", model), ("layer", layer), ("prior", prior), ("unit", unit)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        cond = " WHERE " + " AND ".join(where) if where else ""
        sql = "SELECT * FROM results" + cond + " ORDER BY created DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._db() as con:
            rows = con.execute(sql, args).fetchall()
        good = self._good if check_pictures else self._present
        own = [r for r in map(self._row, rows) if r is not None and good(r)]
        if not shipped or not self.atlases:
            return own
        keys = {r.key for r in own}
        more = [r for r in self._shipped(cond, tuple(args), good) if r.key not in keys]
        out = sorted(own + more, key=lambda r: -r.created)
        return out[:limit] if limit is not None else out

    def distinct(self, column: str) -> list:
        """The values of one of model / layer / prior present in the store, sorted (for filters)."""
        if column not in ("model", "layer", "prior"):
            raise ValueError(f"cannot list {column!r}")
        with self._db() as con:
            own = {r[0] for r in con.execute(f"SELECT DISTINCT {column} FROM results")}
        return sorted(own)

    def __len__(self) -> int:
        with self._db() as con:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
