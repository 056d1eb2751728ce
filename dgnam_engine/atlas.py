"""The shipped atlas: precomputed DGN-AM pictures of whole layers of the offline default, so browsing is instant on a
fresh install.

An atlas is one read-only SQLite file in `assets/atlas/` holding, per unit, the result's row exactly as the results
store keys it (so a live run with the same settings finds it) and a small WebP picture. It is made from a results
store filled by `precompute`:

    python -m dgnam_engine precompute --model efficientnet_lite0 --units all --store data/atlas-build
    python -m dgnam_engine atlas pack --store data/atlas-build --model efficientnet_lite0 --layer classifier

The results store reads it as a second, read-only source: nothing is copied per user.
"""
from __future__ import annotations

import io
import json
import sqlite3
import sys
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
from PIL import Image

from .errors import UserError

ATLAS_DIR = Path(__file__).resolve().parent.parent / "assets" / "atlas"
THUMB = 128  # px: sharp in a grid, and 1000 pictures stay within a few MB
WEBP_QUALITY = 82

_SCHEMA = """
CREATE TABLE results (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, weights_id TEXT NOT NULL, layer TEXT NOT NULL,
    unit INTEGER NOT NULL, label TEXT NOT NULL, prior TEXT NOT NULL, prior_kind TEXT NOT NULL,
    seed INTEGER NOT NULL, settings TEXT NOT NULL, activation_start REAL NOT NULL,
    activation_final REAL NOT NULL, activations TEXT NOT NULL, seconds REAL NOT NULL, device TEXT NOT NULL,
    created REAL NOT NULL, webp BLOB NOT NULL
);
CREATE INDEX results_unit ON results (model, layer, unit);
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
COLUMNS = ("key", "model", "weights_id", "layer", "unit", "label", "prior", "prior_kind", "seed", "settings",
           "activation_start", "activation_final", "activations", "seconds", "device", "created")


def webp_bytes(png_path: Path, size: int = THUMB) -> bytes:
    with Image.open(png_path) as im:
        im = im.convert("RGB").resize((size, size), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="WEBP", quality=WEBP_QUALITY, method=6)
    return buf.getvalue()


def atlas_files(folder: Path = ATLAS_DIR) -> list[Path]:
    return sorted(folder.glob("*.sqlite")) if folder.is_dir() else []


class Atlas:
    """One atlas file, opened read-only (it lives inside the installed project)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        # immutable=1: no locks and no side files, so a read-only install folder works
        con = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True)
        con.row_factory = sqlite3.Row
        return con

    def rows(self, where: str = "", args: tuple = ()) -> list[sqlite3.Row]:
        con = self._connect()
        try:
            cols = ", ".join(COLUMNS)
            return con.execute(f"SELECT {cols} FROM results {where}", args).fetchall()
        finally:
            con.close()

    def get(self, key: str) -> Optional[sqlite3.Row]:
        rows = self.rows("WHERE key = ?", (key,))
        return rows[0] if rows else None

    def webp(self, key: str) -> bytes:
        con = self._connect()
        try:
            r = con.execute("SELECT webp FROM results WHERE key = ?", (key,)).fetchone()
        finally:
            con.close()
        if r is None:
            raise KeyError(key)
        return bytes(r[0])

    def image(self, key: str) -> np.ndarray:
        with Image.open(io.BytesIO(self.webp(key))) as im:
            return np.asarray(im.convert("RGB"))

    def meta(self) -> dict:
        con = self._connect()
        try:
            return {k: json.loads(v) for k, v in con.execute("SELECT name, value FROM meta")}
        finally:
            con.close()


def all_atlases(folder: Path = ATLAS_DIR) -> Iterator[Atlas]:
    for p in atlas_files(folder):
        yield Atlas(p)


def pack(store_root: Path, model: str, layer: Optional[str], out: Path, prior: Optional[str] = None) -> dict:
    """Write the store's results of one model and layer, made with the default settings, into an atlas file."""
    from . import targets as T
    from .runner import Settings
    from .store import ResultsStore, identify

    spec = T.get_spec(model)
    layer = layer or spec.output_layer
    store = ResultsStore(store_root)
    results = store.query(model=model, layer=layer)
    settings = Settings(prior=prior)
    rows, missing = [], 0
    seen = set()
    for r in results:
        ident = identify(model, r.unit, layer, settings, r.seed)
        if ident.key != r.key or r.unit in seen:  # another setting, weights or prior: not the default's picture
            missing += 1
            continue
        seen.add(r.unit)
        rows.append((r.key, r.model, r.weights_id, r.layer, r.unit, r.label, r.prior, r.prior_kind, r.seed,
                     json.dumps(r.settings, sort_keys=True), r.activation_start, r.activation_final,
                     json.dumps([round(a, 4) for a in r.activations]), r.seconds, r.device, r.created,
                     webp_bytes(r.image_path)))
    if not rows:
        raise UserError(f"{store_root} holds no {model} {layer} result made with the default settings")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.executescript(_SCHEMA)
        con.executemany(f"INSERT INTO results VALUES ({','.join('?' * (len(COLUMNS) + 1))})", rows)
        meta = {"model": model, "layer": layer, "units": len(rows), "settings": json.loads(rows[0][9]),
                "thumb_px": THUMB, "made_with": "python -m dgnam_engine precompute; atlas pack"}
        con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()
    tmp.replace(out)
    return {"atlas": str(out), "units": len(rows), "skipped": missing, "bytes": out.stat().st_size}


def cmd_atlas(args) -> int:
    if args.action == "pack":
        from . import targets as T

        layer = args.layer or T.get_spec(args.model).output_layer
        out = Path(args.out) if args.out else ATLAS_DIR / f"{args.model.replace('/', '_')}--{layer}.sqlite"
        info = pack(Path(args.store), args.model, layer, out, args.prior)
        print(json.dumps(info) if args.json else
              f"atlas: {info['units']} units -> {info['atlas']} ({info['bytes'] / 1e6:.1f} MB)")
        return 0
    for a in all_atlases():
        m = a.meta()
        print(f"{a.path.name}: {m.get('model')} {m.get('layer')}, {m.get('units')} units", file=sys.stdout)
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("atlas", help="pack precomputed results into a shipped atlas, or list the atlases")
    s.add_argument("action", choices=["pack", "list"])
    s.add_argument("--store", default="data/atlas-build", help="results folder filled by precompute")
    s.add_argument("--model", default="efficientnet_lite0")
    s.add_argument("--layer", default=None)
    s.add_argument("--prior", default=None)
    s.add_argument("--out", default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_atlas)


from . import cli as _cli  # noqa: E402

_cli._EXTRA_COMMANDS.append(add_parser)
