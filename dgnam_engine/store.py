"""The results store: one SQLite database plus one PNG per result under a data folder.

A result is keyed by everything that determines it (model and weights identity, layer, unit, prior identity,
settings, seed), so a result computed once is found again at once by every front end (dashboard, precompute).
Writes are atomic: the PNG appears under its final name only when complete, and its row is inserted in one
transaction afterwards, so a reader never sees a row without its image. WAL mode and a busy timeout let several
threads and processes read and write at the same time.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .imaging import png_bytes

APP_NAME = "dgnam-studio"
ENV_DATA_DIR = "DGNAM_DATA_DIR"
KEY_VERSION = 1  # bump when the meaning of a result changes, so old rows are not reused

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
    created REAL NOT NULL
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
    """A weights file's identity: name and size (cheap, survives copies); "random" for no file."""
    if path is None:
        return "random"
    p = Path(path)
    try:
        return f"{p.name}:{p.stat().st_size}"
    except OSError:
        return f"{p.name}:missing"


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


def identify(model: str, unit: int, layer: Optional[str] = None, settings: Any = None, seed: Optional[int] = None,
             *, model_weights: Optional[str] = None, prior_file: Optional[str] = None,
             random_weights: bool = False) -> Identity:
    """The key of `runner.visualize(model, [unit], layer, settings, seeds=[seed], ...)`, found from the registries
    and the weight files on disk without loading any model, so a stored result can be shown before any work."""
    from . import priors as P
    from . import targets as T
    from . import weights as W
    from .runner import Settings

    spec = T.get_spec(model)
    s = settings or Settings()
    if random_weights:
        weights_id = "random"
    elif model_weights is not None:
        weights_id = file_identity(model_weights)
    elif spec.weights is not None:
        weights_id = file_identity(W.find(spec.weights))
    else:
        weights_id = "builtin"
    d = dict(s.to_dict())
    d.pop("seed", None)
    d["n_iters"] = s.n_iters or spec.n_iters
    if s.method == "pixel":
        d["prior"], prior_id = None, "pixel"
    else:
        if s.prior is None and prior_file is not None and str(prior_file).endswith(".safetensors"):
            pspec = P.spec_from_file(prior_file)  # a prior file need not be one of the registered priors
            name = pspec.name
        else:
            name = s.prior or P.default_prior_name()
            pspec = P.get_spec(name)
        path = prior_file or pspec.file or (W.find(pspec.weights) if pspec.weights else None)
        d["prior"], prior_id = name, f"{name}@{file_identity(path)}"
    the_layer = layer or spec.output_layer
    the_seed = s.seed if seed is None else seed
    key = key_for(spec.name, weights_id, the_layer, unit, prior_id, d, the_seed)
    return Identity(key, weights_id, prior_id, d)


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

    def png(self) -> bytes:
        return self.image_path.read_bytes()

    def summary(self) -> dict:
        """Everything but the image, as plain JSON-ready values."""
        return {"key": self.key, "model": self.model, "weights": self.weights_id, "layer": self.layer,
                "unit": self.unit, "label": self.label, "prior": self.prior, "prior_kind": self.prior_kind,
                "seed": self.seed, "settings": self.settings, "activation_start": self.activation_start,
                "activation_final": self.activation_final, "activations": self.activations,
                "seconds": self.seconds, "device": self.device, "image": self.image_path.name,
                "created": self.created}


class ResultsStore:
    def __init__(self, root: Optional[str | os.PathLike] = None):
        self.root = Path(root) if root is not None else default_root()
        self.images = self.root / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "results.sqlite"
        self._create()

    def _create(self, wait_s: float = 30.0) -> None:
        """WAL mode (persistent: readers never block the writer) and the table. Switching to WAL takes an
        exclusive lock without waiting on the busy timeout, so two processes opening a new store at once
        (the dashboard and a worker, say) would see "database is locked": retry instead."""
        deadline = time.monotonic() + wait_s
        while True:
            con = self._connect()
            try:
                if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    con.execute("PRAGMA journal_mode=WAL")
                con.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            finally:
                con.close()
            time.sleep(0.02)

    def _connect(self) -> sqlite3.Connection:
        # One short-lived connection per call: safe across threads and processes.
        con = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout=30000")
        con.row_factory = sqlite3.Row
        return con

    def _row(self, r: sqlite3.Row) -> StoredResult:
        return StoredResult(
            key=r["key"], model=r["model"], weights_id=r["weights_id"], layer=r["layer"], unit=r["unit"],
            label=r["label"], prior=r["prior"], prior_kind=r["prior_kind"], seed=r["seed"],
            settings=json.loads(r["settings"]), activation_start=r["activation_start"],
            activation_final=r["activation_final"], activations=json.loads(r["activations"]),
            seconds=r["seconds"], device=r["device"], image_path=self.images / r["image"], created=r["created"])

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def get(self, key: str) -> Optional[StoredResult]:
        con = self._connect()
        try:
            r = con.execute("SELECT * FROM results WHERE key = ?", (key,)).fetchone()
        finally:
            con.close()
        if r is None:
            return None
        res = self._row(r)
        return res if res.image_path.is_file() else None  # an image deleted by hand: compute again

    def put(self, result: Any, key: str, settings: Optional[dict] = None,
            weights_id: Optional[str] = None) -> StoredResult:
        """Store a runner.UnitResult (or anything with its fields) under `key`; the same key replaces.

        Pass the `Identity` the key came from: `put(r, ident.key, ident.settings, ident.weights_id)`. The steps and
        learning rates the run actually used are added to the settings from the result.
        """
        image = np.asarray(result.image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("result.image must be an HxWx3 uint8 array")
        name = f"{key}.png"
        final = self.images / name
        tmp = self.images / f".{key}.{uuid.uuid4().hex}.part"  # unique: concurrent writers never share it
        try:
            tmp.write_bytes(png_bytes(image))
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        settings = dict(settings or {})
        for used in ("n_iters", "lr_start", "lr_end"):
            if hasattr(result, used):
                settings[used] = getattr(result, used)
        curve = [float(a) for a in result.activations]
        row = (key, result.model, weights_id or file_identity(getattr(result, "weights", None)), result.layer,
               int(result.unit), result.label, result.prior, result.prior_kind, int(result.seed),
               json.dumps(settings, sort_keys=True, default=list), float(result.activation_start),
               float(result.activation_final), json.dumps(curve), float(result.seconds), str(result.device),
               name, time.time())
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute(f"INSERT OR REPLACE INTO results VALUES ({','.join('?' * len(row))})", row)
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        return self.get(key)

    def query(self, model: Optional[str] = None, layer: Optional[str] = None, prior: Optional[str] = None,
              unit: Optional[int] = None, limit: Optional[int] = None) -> list[StoredResult]:
        """Stored results matching every given field, newest first."""
        where, args = [], []
        for col, val in (("model", model), ("layer", layer), ("prior", prior), ("unit", unit)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = "SELECT * FROM results" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        con = self._connect()
        try:
            rows = con.execute(sql, args).fetchall()
        finally:
            con.close()
        return [r for r in map(self._row, rows) if r.image_path.is_file()]

    def distinct(self, column: str) -> list:
        """The values of one of model / layer / prior present in the store, sorted (for filters)."""
        if column not in ("model", "layer", "prior"):
            raise ValueError(f"cannot list {column!r}")
        con = self._connect()
        try:
            return [r[0] for r in con.execute(f"SELECT DISTINCT {column} FROM results ORDER BY {column}")]
        finally:
            con.close()

    def __len__(self) -> int:
        con = self._connect()
        try:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        finally:
            con.close()
