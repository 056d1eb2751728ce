"""`python -m dgnam_engine store check [--repair]`: what is wrong with a results folder, and the repair that keeps
every readable result and sets the rest aside (a damaged database is moved, never overwritten)."""
from __future__ import annotations

import os
import re
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Optional

from .cli_options import Parser, add_store_option
from .errors import UserError
from .store import (_COLUMNS, ENV_DATA_DIR, ResultsStore, StoreError, connect_read_only, damaged_message,
                    default_root, own_parts, picture_problem, read_only_message, remove_dead_parts,
                    row_problem)

MAX_ROWID_GAP = 1000  # rowid walk over a damaged table: stop after this many unreadable rowids in a row


def _db_problem(db: Path) -> Optional[str]:
    """Why the database is damaged (integrity_check's first lines, or the error opening it); None if it is sound."""
    try:
        con = connect_read_only(db)
        try:
            lines = [r[0] for r in con.execute("PRAGMA integrity_check(5)")]
            con.execute("SELECT COUNT(*) FROM results").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return None if lines == ["ok"] else " ".join("; ".join(lines[:3]).split())  # one line


def readable_rows(db: Path) -> tuple[list[dict], Optional[str]]:
    """Every row that can still be read, and why some may be missing (None when a full scan went through).

    A full scan of the table (no index) first; if that fails, row by row from a copy of the file padded back to
    the size its header states, so a file cut short still yields the rows on the pages that are left (SQLite
    refuses to read even the schema of a file shorter than its header says). The original is never written."""
    try:
        con = connect_read_only(db)
        try:
            return [dict(r) for r in con.execute("SELECT * FROM results NOT INDEXED")], None
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        why = str(exc)
    with tempfile.TemporaryDirectory(prefix="dgnam-salvage-") as tmp:
        copy = Path(tmp) / "copy.sqlite"
        data = db.read_bytes()
        if len(data) >= 100 and data.startswith(b"SQLite format 3\0"):
            size = int.from_bytes(data[16:18], "big")
            page = 65536 if size == 1 else size
            data += b"\0" * max(0, page * int.from_bytes(data[28:32], "big") - len(data))
        copy.write_bytes(data)
        try:
            con = connect_read_only(copy)
        except sqlite3.DatabaseError:
            return [], why
        rows, gap, rowid = [], 0, 0
        try:
            while gap < MAX_ROWID_GAP:
                rowid += 1
                try:
                    r = con.execute("SELECT * FROM results WHERE rowid = ?", (rowid,)).fetchone()
                except sqlite3.DatabaseError:
                    r = None
                if r is None:
                    gap += 1
                else:
                    gap = 0
                    if _sane(dict(r)):  # a page cut in the middle can give a row of zeros
                        rows.append(dict(r))
        finally:
            con.close()
    return rows, why


def _sane(row: dict) -> bool:
    return row_problem(row) is None


def _shown(r: dict, col: str) -> str:
    return " ".join(str(r.get(col))[:40].split()) or "?"


def check_examples(root: Path) -> tuple[list[str], list[str]]:
    """(fine, problems) for the examples index of the data folder `root`."""
    from .dataset_index import DB_NAME, ExamplesDB

    if not (root / DB_NAME).is_file():
        return [], []
    problems = ExamplesDB(root).check()
    return ([] if problems else [f"the examples index {root / DB_NAME} is sound"]), problems


_NEIGHBOURS = re.compile(r"[0-9a-f]{20}\.npz")  # the folder indexes `neighbours --images` caches (neighbours.py)


def _cached_indexes(root: Path) -> list[Path]:
    folder = root / "neighbours"
    try:
        return sorted(p for p in folder.iterdir() if _NEIGHBOURS.fullmatch(p.name) and p.is_file()
                      and not p.is_symlink())
    except OSError:
        return []


def _npz_problem(path: Path) -> Optional[str]:
    """Why a cached folder index cannot be used (it does not load, or its arrays do not fit together), or None."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            files, feats, pix = z["files"], z["features"], z["pixels"]
    except Exception as exc:  # noqa: BLE001 - numpy and zipfile raise many kinds for a damaged file
        return f"it does not load: {type(exc).__name__}: {' '.join(str(exc).split())[:80]}"
    if not (files.ndim == 1 and feats.ndim == 2 and pix.ndim == 2 and len(files) == len(feats) == len(pix) > 0):
        return "its arrays do not fit together"
    return None


def check_neighbours(root: Path) -> tuple[list[str], list[str]]:
    """(fine, problems) for the folder indexes `neighbours --images` cached in the data folder `root`."""
    found = _cached_indexes(root)
    bad = [f"{p.name}: {why}" for p in found if (why := _npz_problem(p)) is not None]
    if bad:
        return [], [f"{len(bad)} cached photo-folder indexes in {root / 'neighbours'} are damaged (`--repair` sets "
                    "them aside; the folder is indexed again when asked for): " + "; ".join(bad[:3])
                    + (" ..." if len(bad) > 3 else "")]
    return ([f"{len(found)} cached photo-folder indexes in {root / 'neighbours'} load"] if found else []), []


def repair_neighbours(root: Path) -> list[str]:
    """Set each damaged cached folder index aside beside itself (renamed, never deleted)."""
    done = []
    for p in _cached_indexes(root):
        if _npz_problem(p) is not None:
            aside = _aside(p)
            os.replace(p, aside)
            done.append(f"moved the damaged cached photo-folder index to {aside} (the folder is indexed again when "
                        "asked for)")
    return done


def check_atlases() -> tuple[list[str], list[str]]:
    """(fine, problems) for the shipped atlases: their index, values, checksums and pictures."""
    from .atlas import all_atlases

    ok, problems = [], []
    for a in all_atlases():
        good, found = a.check()
        problems += found
        if good:
            ok.append(f"the atlas {a.folder.name}: {good} entries match their checksums")
    return ok, problems


def check(root: Path) -> tuple[list[str], list[str]]:
    """(findings that are fine, problems) for the results folder `root`, its examples index and the shipped
    atlases; reads only."""
    ok, problems = _check_results(root)
    if root.is_dir():
        for part in (check_examples, check_neighbours):
            more_ok, more = part(root)
            ok, problems = ok + more_ok, problems + more
    more_ok, more = check_atlases()
    return ok + more_ok, problems + more


def _check_results(root: Path) -> tuple[list[str], list[str]]:
    ok, problems = [], []
    if not root.exists():
        blocker = next((p for p in root.parents if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            return [], [f"the data folder {root} cannot be created: {blocker} is a file; point {ENV_DATA_DIR} at a "
                        "folder"]
        return [f"no results folder yet at {root} (it is created by the first run)"], []
    if not root.is_dir():
        return [], [f"the data folder {root} is a file, not a folder: point {ENV_DATA_DIR} at a folder "
                    "(or move the file away)"]
    images, db = root / "images", root / "results.sqlite"
    if not os.access(root, os.W_OK | os.X_OK) or (db.exists() and not os.access(db, os.W_OK)):
        problems.append(read_only_message(root))
    elif images.is_dir() and not os.access(images, os.W_OK | os.X_OK):
        problems.append(read_only_message(images, "pictures folder"))
    if not db.exists():
        ok.append(f"no results database yet in {root}")
        return ok, problems
    why = _db_problem(db)
    if why is not None:
        problems.append(damaged_message(db, why))
    rows, _ = readable_rows(db)
    bad, bad_values = [], []
    for r in rows:
        why = row_problem(r)
        if why is not None:
            bad_values.append(f"{_shown(r, 'model')} {_shown(r, 'layer')} unit {_shown(r, 'unit')}: {why}")
            continue
        reason = picture_problem(images / str(r.get("image")), r.get("sha256"))
        if reason is not None:
            bad.append(f"{r.get('model')} {r.get('layer')} unit {r.get('unit')}: picture {reason}")
    good = len(rows) - len(bad) - len(bad_values)
    ok.append(f"{len(rows)} results readable, {good} with good values and a good picture")
    if bad_values:
        problems.append(f"{len(bad_values)} results hold damaged values and are set aside (never served; "
                        "`--repair` removes them and they are rendered again when asked for): "
                        + "; ".join(bad_values[:5]) + (" ..." if len(bad_values) > 5 else ""))
    if bad:
        problems.append(f"{len(bad)} results have a missing or damaged picture (they are rendered again when "
                        f"asked for): " + "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
    parts = own_parts(images) if images.is_dir() else []
    if parts:
        ok.append(f"{len(parts)} unfinished .part files in {images} (removed at the next start once their "
                  "writer is gone)")
    damaged = images / "damaged"
    if damaged.is_dir() and any(damaged.iterdir()):
        ok.append(f"{sum(1 for _ in damaged.iterdir())} damaged pictures set aside earlier in {damaged}")
    return ok, problems


def repair(root: Path) -> list[str]:
    """Keep every readable result whose picture is good; move a damaged database aside and rebuild it from the
    readable rows; drop rows whose picture is missing or damaged (damaged pictures go to images/damaged/)."""
    if not root.is_dir():
        raise StoreError(f"the data folder {root} is a file, not a folder: point {ENV_DATA_DIR} at a folder "
                         "(or move the file away)" if root.exists() else f"no results folder at {root}")
    if not os.access(root, os.W_OK | os.X_OK):
        raise StoreError(read_only_message(root) + "; a repair needs to write there")
    db, images = root / "results.sqlite", root / "images"
    done = [f"removed {len(remove_dead_parts(images))} unfinished .part files"] if images.is_dir() else []
    if not db.exists():
        ResultsStore(root)
        return done + [f"created an empty results database in {root}"]
    why = _db_problem(db)
    rows, _ = readable_rows(db)
    if why is not None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = db.with_name(f"{db.name}.damaged-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(db) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        done.append(f"moved the damaged database ({why}) to {aside}")
    store = ResultsStore(root)
    keep, dropped = [], 0
    for r in rows:
        reason = "damaged values" if row_problem(r) else picture_problem(images / str(r.get("image")),
                                                                          r.get("sha256"))
        if reason is None:
            keep.append(r)
        else:
            dropped += 1
            path = images / str(r.get("image"))
            if reason not in ("missing", "damaged values") and path.is_file():
                (images / "damaged").mkdir(exist_ok=True)
                os.replace(path, images / "damaged" / path.name)
    if why is not None:
        store._insert([tuple(r.get(c) for c in _COLUMNS) for r in keep])
    elif dropped:
        with store._db() as con:
            good = {r["key"] for r in keep}
            con.executemany("DELETE FROM results WHERE key = ?", [(r["key"],) for r in rows if r["key"] not in good])
    done.append(f"kept {len(keep)} results, dropped {dropped} whose picture was missing or damaged or whose values "
                "were damaged")
    return done


def _aside(path: Path) -> Path:
    """A free name beside `path` for setting a damaged file aside (never over another one)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside, n = path.with_name(f"{path.name}.damaged-{stamp}"), 1
    while any(Path(str(aside) + s).exists() for s in ("", "-wal", "-shm", "-journal")):
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    return aside


def repair_examples(root: Path) -> list[str]:
    """A damaged examples index (a damaged page, garbage, cut short) is moved aside, never overwritten; the next
    use starts a fresh one, filled again by `index` or Browse's button."""
    from .dataset_index import DB_NAME, ExamplesDB

    db = root / DB_NAME
    if not db.is_file() or not ExamplesDB(root).check():
        return []
    aside = _aside(db)
    for suffix in ("", "-wal", "-shm", "-journal"):
        src = Path(str(db) + suffix)
        if src.exists():
            os.replace(src, Path(str(aside) + suffix))
    return [f"moved the damaged examples index to {aside}; a fresh one is started when the photos are indexed "
            "again (`python -m dgnam_engine index`, or Browse's button)"]


def cmd_store_check(args) -> int:
    root = Path(args.store).expanduser() if args.store else default_root()
    if args.repair:
        for line in repair(root) + (repair_examples(root) + repair_neighbours(root) if root.is_dir() else []):
            print(line)
    ok, problems = check(root)
    for line in ok:
        print(f"ok: {line}")
    for line in problems:
        print(f"problem: {line}")
    if problems:
        repairable = any(("damaged" in p or "picture" in p) and "the atlas" not in p for p in problems)
        hint = ("; `store check --repair` keeps what is readable and sets the rest aside"
                if repairable and not args.repair else "")
        raise UserError(f"{len(problems)} problem{'s' if len(problems) > 1 else ''} in {root}{hint}")
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("store", help="check (and repair) the results folder")
    ssub = s.add_subparsers(dest="store_command", required=True, parser_class=Parser)
    c = ssub.add_parser("check", help="report what is wrong with the results folder")
    c.add_argument("--repair", action="store_true",
                   help="keep every readable result, set the damaged database and pictures aside, rebuild")
    add_store_option(c)
    c.set_defaults(func=cmd_store_check)

