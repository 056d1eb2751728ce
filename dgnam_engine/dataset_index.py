"""Dataset examples: for every unit of chosen layers, the real photos of a folder that drive it most.

`python -m dgnam_engine index --model M --layers L1,L2 --images DIR` runs every photo through the model once and
keeps, per unit, the top-k photos (for a convolutional unit: its maximum over positions, where it is, and so the
receptive-field patch around it). `python -m dgnam_engine examples --model M --layer L --unit U` prints them.

Stored beside the results store (`examples.sqlite` in the data folder), keyed by model, weights, layer and the
folder's identity (its files' names, sizes and times), so a changed folder is indexed anew. Each batch is committed,
all layers in one transaction, with the list of photos it covered: a killed run resumes without redoing finished
photos and never merges a batch twice.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from .cli_options import whole_arg
from .convention import from_uint8
from . import json_out
from .errors import UserError
from . import photo_folder
from .photo_folder import list_photos
from .photos import read_photo, square
from . import targets as T
from .targets import LayerInfo, Target

DB_NAME = "examples.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS indexes (
    id TEXT PRIMARY KEY, model TEXT NOT NULL, weights_id TEXT NOT NULL, layer TEXT NOT NULL,
    folder TEXT NOT NULL, folder_id TEXT NOT NULL, n_images INTEGER NOT NULL, top_k INTEGER NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS done_images (
    index_id TEXT NOT NULL, image TEXT NOT NULL, ok INTEGER NOT NULL, PRIMARY KEY (index_id, image)
);
CREATE TABLE IF NOT EXISTS top (
    index_id TEXT NOT NULL, unit INTEGER NOT NULL, rank INTEGER NOT NULL, activation REAL NOT NULL,
    image TEXT NOT NULL, row INTEGER NOT NULL, col INTEGER NOT NULL, PRIMARY KEY (index_id, unit, rank)
);
"""


def folder_identity(folder: Path, files: list[str]) -> str:
    h = hashlib.sha256()
    for rel in files:
        st = (folder / rel).stat()
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def index_id(model: str, weights_id: str, layer: str, folder_id: str) -> str:
    blob = json.dumps([model, weights_id, layer, folder_id])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@dataclass
class Example:
    rank: int
    activation: float
    image: str  # absolute path of the photo
    row: int
    col: int

    def as_dict(self) -> dict:
        return {"rank": self.rank, "activation": self.activation, "image": self.image, "row": self.row,
                "col": self.col}


class ExamplesDamaged(UserError):
    """The examples index holds a damaged page or value; `store check --repair` sets it aside."""


def damaged_message(path: Path, reason: str) -> str:
    return (f"the examples index {path} is damaged ({' '.join(reason.split())[:160]}): run `python -m dgnam_engine "
            f"store check --repair` to set it aside, then index the photos again")


def _sound_example(rank, act, image, r, c) -> bool:
    return (isinstance(rank, int) and isinstance(act, float) and math.isfinite(act) and isinstance(image, str)
            and bool(image) and not Path(image).is_absolute() and ".." not in Path(image).parts
            and isinstance(r, int) and isinstance(c, int) and r >= 0 and c >= 0)


_checked: dict[tuple, Optional[str]] = {}  # (path, size, mtime_ns) -> what SQLite's quick_check found


class ExamplesDB:
    """`examples.sqlite` in a data folder. A folder nobody may write to opens it read-only (browsing works,
    `index` says the folder is read-only); failures are one line: damaged, full disk, read-only."""

    def __init__(self, root: Path):
        from .store import read_only_message

        self.root = Path(root)
        self.path = self.root / DB_NAME
        writable = os.access(self.root, os.W_OK | os.X_OK) if self.root.is_dir() else True
        if writable and self.path.exists():
            writable = os.access(self.path, os.W_OK)
        self.read_only = not writable
        self._read_only_line = read_only_message(self.root, "data folder")
        if self.read_only or self.problem() is not None:  # a damaged file is reported by its users, never written
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the data folder {self.root} ({exc.strerror or exc}): choose another "
                            "folder with DGNAM_DATA_DIR") from None
        with self._db() as con:
            con.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        from .store import connect_read_only

        if self.read_only:
            return connect_read_only(self.path)
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout=30000")
        return con

    def _error(self, exc: Exception) -> UserError:
        from .store import full_disk_message, is_full_disk

        msg = str(exc).strip() or type(exc).__name__
        if is_full_disk(exc, self.root if self.root.is_dir() else None):
            return UserError(full_disk_message(self.path.parent, "the examples index"))
        if "readonly" in msg or "read-only" in msg:
            return UserError(self._read_only_line)
        if "unable to open" in msg:
            return UserError(f"cannot open the examples index {self.path} ({msg}): fix the permissions of "
                             f"{self.root} or choose another folder with DGNAM_DATA_DIR")
        return ExamplesDamaged(damaged_message(self.path, msg))

    @contextlib.contextmanager
    def _db(self):
        try:
            con = self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise self._error(exc) from None
        try:
            yield con
        except (sqlite3.Error, OSError) as exc:
            raise self._error(exc) from None
        finally:
            con.close()

    def exists(self) -> bool:
        return self.path.is_file()

    def problem(self) -> Optional[str]:
        """Why the index is damaged (SQLite's quick_check), or None; checked once per version of the file."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        stamp = (str(self.path), st.st_size, st.st_mtime_ns)
        if stamp not in _checked:
            try:
                from .store import connect_read_only

                con = connect_read_only(self.path)
                try:
                    lines = [r[0] for r in con.execute("PRAGMA quick_check(3)")]
                    for t in ("indexes", "done_images", "top"):
                        con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()
                finally:
                    con.close()
                _checked[stamp] = None if lines == ["ok"] else "; ".join(lines)
            except sqlite3.Error as exc:
                _checked[stamp] = str(exc)
        return _checked[stamp]

    def _check_sound(self) -> None:
        why = self.problem()
        if why is not None:
            raise ExamplesDamaged(damaged_message(self.path, why))

    def _writable(self) -> None:
        if self.read_only:
            raise UserError(self._read_only_line)

    def begin(self, iid: str, model: str, weights_id: str, layer: str, folder: Path, folder_id: str,
              n_images: int, top_k: int) -> tuple[set[str], dict[int, list[tuple]]]:
        """Register an index (or find it) and return the photos it already covered and its top lists."""
        self._writable()
        self._check_sound()
        with self._db() as con:
            row = con.execute("SELECT top_k FROM indexes WHERE id = ?", (iid,)).fetchone()
            if row is not None and row[0] != top_k:  # another k: start over rather than mix
                con.execute("BEGIN IMMEDIATE")
                for t in ("done_images", "top"):
                    con.execute(f"DELETE FROM {t} WHERE index_id = ?", (iid,))
                con.execute("COMMIT")
            con.execute("INSERT OR REPLACE INTO indexes VALUES (?,?,?,?,?,?,?,?,?)",
                        (iid, model, weights_id, layer, str(folder), folder_id, n_images, top_k, time.time()))
            done = {r[0] for r in con.execute("SELECT image FROM done_images WHERE index_id = ?", (iid,))}
            tops: dict[int, list[tuple]] = {}
            for unit, act, image, r, c in con.execute(
                    "SELECT unit, activation, image, row, col FROM top WHERE index_id = ? ORDER BY unit, rank",
                    (iid,)):
                tops.setdefault(unit, []).append((act, image, r, c))
            return done, tops

    def commit(self, batch: dict[str, dict[int, list[tuple]]], images: list[tuple[str, bool]]) -> None:
        """The new top lists of every index in `batch` (index id -> top lists) and the photos they now cover, in one
        transaction: a kill leaves every layer before or after this batch, never some layers after it."""
        with self._db() as con:
            try:
                con.execute("BEGIN IMMEDIATE")
                now = time.time()
                for iid, tops in batch.items():
                    con.execute("DELETE FROM top WHERE index_id = ?", (iid,))
                    con.executemany("INSERT INTO top VALUES (?,?,?,?,?,?,?)",
                                    [(iid, u, k, a, img, r, c) for u, lst in tops.items()
                                     for k, (a, img, r, c) in enumerate(lst)])
                    con.executemany("INSERT OR REPLACE INTO done_images VALUES (?,?,?)",
                                    [(iid, img, int(ok)) for img, ok in images])
                    con.execute("UPDATE indexes SET updated = ? WHERE id = ?", (now, iid))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise

    def find(self, model: str, weights_id: str, layer: str, folder: Optional[Path] = None) -> Optional[dict]:
        """The most complete index of this model, weights and layer (of `folder` if given)."""
        if not self.exists():
            return None
        self._check_sound()
        with self._db() as con:
            con.row_factory = sqlite3.Row
            sql = ("SELECT i.*, (SELECT COUNT(*) FROM done_images d WHERE d.index_id = i.id) AS done, "
                   "(SELECT COUNT(*) FROM done_images d WHERE d.index_id = i.id AND d.ok = 1) AS readable "
                   "FROM indexes i WHERE model = ? AND weights_id = ? AND layer = ?")
            args: list = [model, weights_id, layer]
            if folder is not None:
                sql += " AND folder = ?"
                args.append(str(Path(folder).resolve()))
            rows = [dict(r) for r in con.execute(sql + " ORDER BY done DESC, updated DESC", args)]
            return rows[0] if rows else None

    def examples(self, idx: dict, unit: int, top: int) -> list[tuple]:
        """A unit's top photos; ExamplesDamaged when a value is damaged or rows are missing (a damaged page can
        drop rows without an error: a unit has min(top, top_k, readable photos) of them)."""
        self._check_sound()
        with self._db() as con:
            rows = con.execute("SELECT rank, activation, image, row, col FROM top WHERE index_id = ? AND unit = ? "
                               "ORDER BY rank LIMIT ?", (idx["id"], unit, top)).fetchall()
        expected = min(top, int(idx["top_k"]), int(idx.get("readable", 0)))
        if len(rows) < expected or not all(_sound_example(*r) for r in rows) \
                or [r[0] for r in rows] != list(range(len(rows))):
            raise ExamplesDamaged(damaged_message(self.path, f"unit {unit} has missing or damaged photos"))
        return rows

    def check(self) -> list[str]:
        """Problems for `store check`: a damaged file, or top lists that are short or hold damaged values."""
        if not self.exists():
            return []
        why = self.problem()
        if why is not None:
            return [damaged_message(self.path, why)]
        try:
            with self._db() as con:
                idxs = con.execute("SELECT id, top_k, (SELECT COUNT(*) FROM done_images d WHERE d.index_id = i.id "
                                   "AND d.ok = 1) FROM indexes i").fetchall()
                bad = 0
                for iid, top_k, readable in idxs:
                    want = min(int(top_k), int(readable))
                    lists: dict[int, list] = {}
                    for rank, act, image, r, c, unit in con.execute(
                            "SELECT rank, activation, image, row, col, unit FROM top NOT INDEXED WHERE index_id = ? "
                            "ORDER BY unit, rank", (iid,)):
                        lists.setdefault(unit, []).append((rank, act, image, r, c))
                    for lst in lists.values():
                        names = [e[2] for e in lst]
                        if (len(lst) != want or not all(_sound_example(*e) for e in lst)
                                or len(set(names)) != len(names)):
                            bad += 1
        except UserError as exc:
            return [str(exc)]
        return [damaged_message(self.path, f"{bad} top lists are short, repeat a photo or hold damaged values")] \
            if bad else []


def photo_batch(folder: Path, files: list[str], size: int) -> tuple[torch.Tensor, list[tuple[str, bool]]]:
    """RGB [0,1] squares of the readable photos, and (file, readable) for each file."""
    ims, status = [], []
    for rel in files:
        try:
            ims.append(square(read_photo(folder / rel), size))
            status.append((rel, True))
        except UserError:
            status.append((rel, False))  # counted as covered: a damaged photo is not retried every run
    x = from_uint8(ims) if ims else torch.empty(0, 3, size, size)
    return x, status


def unit_maxima(out: torch.Tensor, layer: LayerInfo) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image and unit: the activation (a conv unit's maximum over positions) and where it is: (B,U) each."""
    out = out.float()
    b = out.shape[0]
    if layer.kind == "conv":
        flat = out.flatten(2)
        vals, idx = flat.max(2)
        w = out.shape[3]
        return vals, idx // w, idx % w
    if layer.kind == "tokens":
        vals = out.mean(1)
    else:
        vals = out
    zeros = torch.zeros(b, vals.shape[1], dtype=torch.long)
    return vals, zeros, zeros


def merge_top(tops: dict[int, list[tuple]], vals: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
              names: list[str], k: int) -> None:
    """Fold one batch into the per-unit top-k lists (activation, image, row, col), highest first."""
    v = vals.cpu().numpy()
    r, c = rows.cpu().numpy(), cols.cpu().numpy()
    for u in range(v.shape[1]):
        old = tops.get(u, [])
        seen = {t[1] for t in old}  # a photo merged again (a batch redone) is not listed twice
        cand = old + [(float(v[j, u]), names[j], int(r[j, u]), int(c[j, u])) for j in range(len(names))
                      if names[j] not in seen]
        cand.sort(key=lambda t: (-t[0], t[1]))
        tops[u] = cand[:k]


def build(target: Target, weights_id: str, layers: list[str], folder: Path, db: ExamplesDB, top_k: int = 9,
          batch: int = 16, progress: Optional[Callable[[int, int, float], None]] = None) -> dict:
    """Index `folder` for every layer; returns a summary. Resumes where a previous run of the same index stopped."""
    folder = photo_folder.resolve(folder)
    files = list_photos(folder)
    fid = folder_identity(folder, files)
    infos = [target.layer(name) for name in layers]  # UserError for a layer that does not exist, before any work
    state = {}
    for info in infos:
        iid = index_id(target.name, weights_id, info.name, fid)
        done, tops = db.begin(iid, target.name, weights_id, info.name, folder, fid, len(files), top_k)
        state[info.name] = (iid, done, tops)
    todo = [f for f in files if any(f not in state[i.name][1] for i in infos)]
    already = len(files) - len(todo)
    t0 = time.perf_counter()
    n_done = skipped = 0
    size = target.spec.input_size
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        x, status = photo_batch(folder, chunk, size)
        ok_names = [f for f, ok in status if ok]
        skipped += sum(1 for _, ok in status if not ok)
        if len(ok_names):
            with torch.no_grad():
                x_model = target.preprocess(target.rgb_to_gen(x.to(target.device)))
                for info in infos:
                    iid, done, tops = state[info.name]
                    vals, rows, cols = unit_maxima(target.forward_to(x_model, info), info)
                    merge_top(tops, vals, rows, cols, ok_names, top_k)
        db.commit({state[i.name][0]: state[i.name][2] for i in infos}, status)
        for info in infos:
            state[info.name][1].update(f for f, _ in status)
        n_done += len(chunk)
        if progress is not None:
            progress(n_done, len(todo), n_done / max(time.perf_counter() - t0, 1e-9))
    seconds = time.perf_counter() - t0
    return {"model": target.name, "layers": [i.name for i in infos], "folder": str(folder), "images": len(files),
            "indexed": n_done, "already_done": already, "unreadable": skipped, "seconds": seconds,
            "images_per_second": n_done / seconds if n_done and seconds > 0 else 0.0, "db": str(db.path)}


def examples(db: ExamplesDB, model: str, weights_id: str, layer: str, unit: int, top: int = 9,
             folder: Optional[Path] = None) -> tuple[Optional[dict], list[Example]]:
    idx = db.find(model, weights_id, layer, folder)
    if idx is None:
        return None, []
    base = Path(idx["folder"])
    return idx, [Example(rank + 1, act, str(base / img), r, c)
                 for rank, act, img, r, c in db.examples(idx, unit, top)]


# ----- command line ----------------------------------------------------------------------------------------------

def default_folder() -> Path:
    """The offline photo corpus in the data folder, built on first use from the photos installed packages ship."""
    from .store import default_root

    folder = default_root() / "corpus"
    if not folder.is_dir() or not any(folder.iterdir()):
        from .training.corpus import build_corpus

        print(f"building the offline photo corpus in {folder} (photos that installed packages ship)…",
              file=sys.stderr)
        build_corpus(folder)
    return folder


def _weights_id(target: Target) -> str:
    from .store import file_identity

    return file_identity(target.weights_path)


def cmd_index(args) -> int:
    from .runner import get_target
    from .store import default_root

    if args.top < 1 or args.batch < 1:
        raise UserError("--top and --batch must be at least 1")
    folder = Path(args.images).expanduser() if args.images else default_folder()
    target = get_target(args.model or T.default_target(), args.device, args.weights, args.random_weights)
    layers = [s.strip() for s in (args.layers or target.spec.output_layer).split(",") if s.strip()]
    db = ExamplesDB(Path(args.store) if args.store else default_root())
    tty = sys.stderr.isatty()
    saved = [0]  # photos of this run committed so far (progress is called after each commit)

    def progress(done, total, rate):
        saved[0] = done
        if args.quiet:
            return
        eta = (total - done) / rate if rate > 0 else 0
        line = f"indexed {done}/{total} photos  {rate:.1f} images/s  ETA {eta:.0f} s"
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    try:
        try:
            summary = build(target, _weights_id(target), layers, folder, db, args.top, args.batch, progress)
        finally:
            if tty and not args.quiet:
                print(file=sys.stderr)  # end the progress line
    except KeyboardInterrupt:
        print(f"interrupted: {saved[0]} photos of this run are saved in {db.path}; run the same command again to "
              "go on from there", file=sys.stderr)
        return 130
    if args.json:
        print(json_out.dumps(summary))
    else:
        print(f"index {summary['model']} {','.join(summary['layers'])}: {summary['indexed']} photos indexed, "
              f"{summary['already_done']} already done, {summary['unreadable']} unreadable, "
              f"{summary['images_per_second']:.1f} images/s -> {summary['db']}")
    return 0


def cmd_examples(args) -> int:
    from .receptive_field import receptive_field
    from .runner import get_target
    from .store import default_root

    target = get_target(args.model or T.default_target(), "cpu", args.weights, args.random_weights)
    info = target.layer(args.layer)
    target.check_unit(info, args.unit)
    db = ExamplesDB(Path(args.store) if args.store else default_root())
    idx, rows = examples(db, target.name, _weights_id(target), info.name, args.unit, args.top,
                         photo_folder.resolve(Path(args.images)) if args.images else None)
    if idx is None:
        raise UserError(f"no index of {target.name} {info.name} yet: run `python -m dgnam_engine index --model "
                        f"{target.name} --layers {info.name}` first")
    out = []
    for ex in rows:
        d = ex.as_dict()
        if info.kind == "conv":
            d["box"] = list(receptive_field(target, info, (ex.row, ex.col)))
        out.append(d)
    if args.json:
        print(json_out.dumps({"model": target.name, "layer": info.name, "unit": args.unit,
                              "folder": idx["folder"], "images_indexed": idx["done"], "examples": out}))
    else:
        print(f"{target.name} {info.name} unit {args.unit}: top {len(out)} of {idx['done']} photos in "
              f"{idx['folder']}")
        for d in out:
            where = f" at {d['row']},{d['col']}" if info.kind == "conv" else ""
            print(f"{d['rank']:3d}  {d['activation']:9.3f}  {d['image']}{where}")
    return 0


def add_parsers(sub) -> None:
    s = sub.add_parser("index", help="find the real photos that drive each unit most (resumable)")
    s.add_argument("--model", default=None, help="default: as visualize")
    s.add_argument("--layers", default=None, help="comma-separated layer names (default: the output layer)")
    s.add_argument("--images", default=None, help="a folder of photos (default: the offline photo corpus)")
    s.add_argument("--top", type=whole_arg("--top"), default=9, help="photos kept per unit")
    s.add_argument("--batch", type=whole_arg("--batch"), default=16)
    s.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    s.add_argument("--weights", default=None)
    s.add_argument("--random-weights", action="store_true")
    s.add_argument("--store", default=None, help="data folder (default: $DGNAM_DATA_DIR or the user data dir)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=cmd_index)

    s = sub.add_parser("examples", help="print the real photos that drive a unit most (after `index`)")
    s.add_argument("--model", default=None)
    s.add_argument("--layer", default=None)
    s.add_argument("--unit", type=whole_arg("--unit"), required=True)
    s.add_argument("--top", type=whole_arg("--top"), default=9)
    s.add_argument("--images", default=None, help="only the index of this folder")
    s.add_argument("--weights", default=None)
    s.add_argument("--random-weights", action="store_true")
    s.add_argument("--store", default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_examples)

