"""The shipped atlas: precomputed DGN-AM pictures of whole layers of the offline default, so browsing is instant on a
fresh install.

An atlas is a folder in `assets/atlas/` of small WebP pictures and one read-only `index.sqlite` holding, per unit,
the result's row exactly as the results store keys it (so a live run with the same settings finds it). It is made
from a results store filled by `precompute`:

    python -m dgnam_engine precompute --model efficientnet_lite0 --units all --store data/atlas-build
    python -m dgnam_engine atlas pack --store data/atlas-build --model efficientnet_lite0 --layer classifier

The results store reads it as a second, read-only source: nothing is copied per user.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Optional

from PIL import Image

from .errors import UserError

ATLAS_DIR = Path(__file__).resolve().parent.parent / "assets" / "atlas"
ENV_ATLAS_DIR = "DGNAM_ATLAS_DIR"  # another folder of atlases (tests, or atlases kept elsewhere)
THUMB = 128  # px: sharp in a grid, and 1000 pictures stay within a few MB
WEBP_QUALITY = 82

INDEX = "index.sqlite"
_SCHEMA = """
CREATE TABLE results (
    key TEXT PRIMARY KEY, model TEXT NOT NULL, weights_id TEXT NOT NULL, layer TEXT NOT NULL,
    unit INTEGER NOT NULL, label TEXT NOT NULL, prior TEXT NOT NULL, prior_kind TEXT NOT NULL,
    seed INTEGER NOT NULL, settings TEXT NOT NULL, activation_start REAL NOT NULL,
    activation_final REAL NOT NULL, activations TEXT NOT NULL, seconds REAL NOT NULL, device TEXT NOT NULL,
    image TEXT NOT NULL, created REAL NOT NULL, sha256 TEXT NOT NULL
);
CREATE INDEX results_unit ON results (model, layer, unit);
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
COLUMNS = ("key", "model", "weights_id", "layer", "unit", "label", "prior", "prior_kind", "seed", "settings",
           "activation_start", "activation_final", "activations", "seconds", "device", "image", "created", "sha256")


def webp_bytes(png_path: Path, size: int = THUMB) -> bytes:
    with Image.open(png_path) as im:
        im = im.convert("RGB").resize((size, size), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="WEBP", quality=WEBP_QUALITY, method=6)
    return buf.getvalue()


def atlas_root() -> Path:
    env = os.environ.get(ENV_ATLAS_DIR)
    return Path(env).expanduser() if env else ATLAS_DIR


def atlas_dirs(folder: Optional[Path] = None) -> list[Path]:
    folder = folder or atlas_root()
    return sorted(p.parent for p in folder.glob(f"*/{INDEX}")) if folder.is_dir() else []


class Atlas:
    """One atlas folder, read-only (it lives inside the installed project)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _connect(self) -> sqlite3.Connection:
        # immutable: no locks and no side files, so a read-only install folder works
        con = sqlite3.connect(f"file:{self.folder / INDEX}?mode=ro&immutable=1", uri=True)
        con.row_factory = sqlite3.Row
        return con

    def rows(self, where: str = "", args: tuple = ()) -> list[sqlite3.Row]:
        con = self._connect()
        try:
            return con.execute(f"SELECT {', '.join(COLUMNS)} FROM results {where}", args).fetchall()
        finally:
            con.close()

    def meta(self) -> dict:
        con = self._connect()
        try:
            return {k: json.loads(v) for k, v in con.execute("SELECT name, value FROM meta")}
        finally:
            con.close()


def all_atlases(folder: Optional[Path] = None) -> list[Atlas]:
    return [Atlas(d) for d in atlas_dirs(folder)]


def _same_request(r, ident) -> bool:
    """Whether a stored result answers the request `ident` stands for, also when it was stored under an older key
    scheme: the same weights file (by content, or by the name and size older keys used), prior and settings (a
    setting older results lack had its default; their "auto" path is the one their device resolves it to)."""
    from . import accel as Acc
    from . import targets as T
    from . import weights as W
    from .runner import Settings

    spec = T.get_spec(r.model)
    path = W.find(spec.weights) if spec.weights else None
    legacy = f"{path.name}:{path.stat().st_size}" if path is not None else None
    if r.weights_id not in (ident.weights_id, legacy):
        return False
    if r.prior != (ident.settings.get("prior") or ident.settings.get("method") or "pixel"):  # pixel, maco: no prior
        return False
    stored = {**Settings().to_dict(), **r.settings}
    if stored.get("accel") in ("auto", "plain"):
        dev = T.resolve_device(r.device.split(":")[0])
        stored["accel"] = Acc.describe(Acc.resolve(stored["accel"], dev), dev)
    # settings the request fixes must match; the run fills in what it left open (learning rates)
    return all(stored.get(k) == v for k, v in ident.settings.items() if v is not None)


def pack(store_root: Path, model: str, layer: Optional[str], out: Path, prior: Optional[str] = None,
         n_iters: Optional[int] = None) -> dict:
    """Write the store's results of one model and layer, made with the default settings, into an atlas file."""
    from . import targets as T
    from .runner import Settings
    from .store import ResultsStore, identify

    spec = T.get_spec(model)
    layer = layer or spec.output_layer
    store = ResultsStore(store_root, atlases=[])
    results = store.query(model=model, layer=layer)
    settings = Settings(prior=prior, n_iters=n_iters)
    rows, missing, pictures = [], 0, {}
    seen = set()
    for r in results:
        ident = identify(model, r.unit, layer, settings, r.seed)
        if r.unit in seen or not _same_request(r, ident):  # another setting, weights or prior
            missing += 1
            continue
        seen.add(r.unit)
        # keyed as the results store keys this request today, so a live run with the same settings finds it
        name = f"{ident.key}.webp"
        pictures[name] = webp_bytes(r.image_path)
        rows.append((ident.key, r.model, ident.weights_id, r.layer, r.unit, r.label, r.prior, r.prior_kind, r.seed,
                     json.dumps({**r.settings, **{k: v for k, v in ident.settings.items() if v is not None}},
                                sort_keys=True), r.activation_start, r.activation_final,
                     json.dumps([round(a, 4) for a in r.activations]), r.seconds, r.device, name,
                     r.created, hashlib.sha256(pictures[name]).hexdigest()))
    if not rows:
        raise UserError(f"{store_root} holds no {model} {layer} result made with the default settings")
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, data in pictures.items():
        (tmp / name).write_bytes(data)
    con = sqlite3.connect(tmp / INDEX)
    try:
        con.executescript(_SCHEMA)
        con.executemany(f"INSERT INTO results VALUES ({','.join('?' * len(COLUMNS))})", rows)
        meta = {"model": model, "layer": layer, "units": len(rows), "settings": json.loads(rows[0][9]),
                "thumb_px": THUMB, "made_with": "python -m dgnam_engine precompute; atlas pack"}
        con.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    size = sum(f.stat().st_size for f in out.iterdir())
    return {"atlas": str(out), "units": len(rows), "skipped": missing, "bytes": size}


def cmd_atlas(args) -> int:
    if args.action == "pack":
        from . import targets as T

        layer = args.layer or T.get_spec(args.model).output_layer
        out = Path(args.out) if args.out else atlas_root() / f"{args.model.replace('/', '_')}--{layer}"
        info = pack(Path(args.store), args.model, layer, out, args.prior, args.iters)
        print(json.dumps(info) if args.json else
              f"atlas: {info['units']} units -> {info['atlas']} ({info['bytes'] / 1e6:.1f} MB)")
        return 0
    for a in all_atlases():
        m = a.meta()
        print(f"{a.folder.name}: {m.get('model')} {m.get('layer')}, {m.get('units')} units")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("atlas", help="pack precomputed results into a shipped atlas, or list the atlases")
    s.add_argument("action", choices=["pack", "list"])
    s.add_argument("--store", default="data/atlas-build", help="results folder filled by precompute")
    s.add_argument("--model", default="efficientnet_lite0")
    s.add_argument("--layer", default=None)
    s.add_argument("--prior", default=None)
    s.add_argument("--iters", type=int, default=None, help="the steps the results were made with (default: 200)")
    s.add_argument("--out", default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_atlas)


from . import cli as _cli  # noqa: E402

_cli._EXTRA_COMMANDS.append(add_parser)
