"""The shipped atlas: precomputed DGN-AM pictures of whole layers of the offline default, so browsing is instant on a
fresh install.

An atlas is a folder in `assets/atlas/` of small WebP pictures and one read-only `index.sqlite` holding, per unit,
the result's row exactly as the results store keys it (so a live run with the same settings finds it). It is made
from a results store filled by `precompute`:

    python -m dgnam_engine precompute --model efficientnet_lite0 --units all --store data/atlas-build
    python -m dgnam_engine atlas pack --store data/atlas-build --model efficientnet_lite0 --layer classifier

The results store reads it as a second, read-only source: nothing is copied per user.

`SHA256SUMS` beside the index holds the sha256 of the index file, of each picture, and of each index row and meta
entry (`row:KEY`, `meta:NAME`): at first use the index file is hashed once; if it differs (a flipped bit), each row
is checked against its own digest, so one damaged entry is set aside and the rest are still served. An atlas
without its SHA256SUMS (unsealed) is not served at all. `atlas seal` and `atlas rekey` refuse an atlas that does not
match its seal (they would bless the damage); `pack` and `rekey` build the new atlas beside the old one and swap it
in, so a kill leaves the old one whole.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import uuid
from pathlib import Path
from typing import Optional

from PIL import Image

from .assets import ASSETS
from . import json_out
from .errors import UserError

log = logging.getLogger(__name__)

ATLAS_DIR = ASSETS / "atlas"
ENV_ATLAS_DIR = "DGNAM_ATLAS_DIR"  # another folder of atlases (tests, or atlases kept elsewhere)
THUMB = 128  # px: sharp in a grid, and 1000 pictures stay within a few MB
WEBP_QUALITY = 82

INDEX = "index.sqlite"
CHECKSUMS = "SHA256SUMS"
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
    """The atlas folders in `folder`; hidden ones (a pack or rekey at work, or killed mid-way) are no atlas."""
    folder = folder or atlas_root()
    return sorted(p.parent for p in folder.glob(f"*/{INDEX}") if not p.parent.name.startswith(".")) \
        if folder.is_dir() else []


def row_digest(values) -> str:
    """The sha256 of one index row (its values in COLUMNS order, or a meta entry's name and value)."""
    # a damaged value may come back as another type (bytes): it gets a digest too, which then does not match
    return hashlib.sha256(json.dumps(list(values), separators=(",", ":"), default=repr).encode()).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_checksums(folder: Path) -> Optional[dict[str, str]]:
    """NAME -> sha256 from an atlas's SHA256SUMS (a damaged line only loses its own entry); None if there is none.
    AtlasDamaged when it is there but cannot be read (a folder, no permission)."""
    path = Path(folder) / CHECKSUMS
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AtlasDamaged(f"the atlas checksums {path} cannot be read ({exc.strerror or exc}): the atlas is not "
                           "served; reinstall the project to restore it") from None
    sums = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if sep and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            sums[name] = digest
    return sums


def write_checksums(folder: Path) -> int:
    """Write SHA256SUMS for an atlas folder from its index and pictures as they are (no picture is rendered).
    Returns the number of entries."""
    folder = Path(folder)
    con = sqlite3.connect(f"file:{folder / INDEX}?mode=ro&immutable=1", uri=True)
    try:
        rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM results ORDER BY key").fetchall()
        meta = con.execute("SELECT name, value FROM meta ORDER BY name").fetchall()
    finally:
        con.close()
    lines = [f"{file_digest(folder / INDEX)}  {INDEX}"]
    lines += [f"{row_digest(r)}  row:{r[0]}" for r in rows]
    lines += [f"{row_digest(m)}  meta:{m[0]}" for m in meta]
    lines += [f"{file_digest(folder / r[COLUMNS.index('image')])}  {r[COLUMNS.index('image')]}" for r in rows]
    from .imaging import write_atomic

    write_atomic(("\n".join(lines) + "\n").encode(), folder / CHECKSUMS)
    return len(lines)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


class AtlasDamaged(UserError):
    pass


def unsealed_message(folder: Path) -> str:
    return (f"the atlas {folder} is unsealed (it has no {CHECKSUMS}): its entries cannot be verified and are not "
            "served; reinstall the project to restore it (`python -m dgnam_engine atlas seal` seals an atlas you "
            "packed yourself)")


class Atlas:
    """One atlas folder, read-only (it lives inside the installed project). Every row and meta entry it hands out
    matches its checksum; the others are set aside (`damaged`) and never served. An unsealed atlas (no SHA256SUMS)
    serves nothing: a deleted seal must not turn the checks off."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._sums: Optional[dict] = None
        self._trusted: Optional[bool] = None  # the whole index file matches its checksum
        self.damaged: dict[str, str] = {}  # entry -> why, found so far

    def _connect(self) -> sqlite3.Connection:
        # immutable: no locks and no side files, so a read-only install folder works
        con = sqlite3.connect(f"file:{self.folder / INDEX}?mode=ro&immutable=1", uri=True)
        con.row_factory = sqlite3.Row
        con.text_factory = _text  # a damaged text value costs its row (its checksum), not the whole query
        return con

    def checksums(self) -> dict:
        """The atlas's checksums, read once; the index file hashed once. AtlasDamaged (one line) when the atlas is
        unsealed or its checksums or index cannot be read."""
        if self._trusted is None:
            sums = read_checksums(self.folder)
            if sums is None:
                raise AtlasDamaged(unsealed_message(self.folder))
            try:
                self._trusted = sums.get(INDEX) == file_digest(self.folder / INDEX)
            except OSError as exc:
                raise AtlasDamaged(f"the atlas index {self.folder / INDEX} cannot be read ({exc.strerror or exc})") \
                    from None
            self._sums = sums
        return self._sums

    def _verified(self, entry: str, values) -> bool:
        sums = self.checksums()
        if self._trusted:
            return True
        if sums.get(entry) == row_digest(values):
            return True
        if entry not in self.damaged:
            self.damaged[entry] = "differs from its checksum"
            log.warning("damaged entry %s in the atlas %s (differs from its checksum): not served; reinstall the "
                        "project to restore it", entry, self.folder)
        return False

    def rows(self, where: str = "", args: tuple = ()) -> list[sqlite3.Row]:
        """The rows matching an SQL condition that match their checksums."""
        self.checksums()
        con = self._connect()
        try:
            rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM results {where}", args).fetchall()
        finally:
            con.close()
        return [r for r in rows if self._verified(f"row:{r['key']}", tuple(r))]

    def meta(self) -> dict:
        """The atlas's description; AtlasDamaged (one line) when its index or a meta entry is damaged."""
        try:
            self.checksums()
            con = self._connect()
            try:
                pairs = con.execute("SELECT name, value FROM meta").fetchall()
            finally:
                con.close()
            out = {}
            for name, value in pairs:
                if not self._verified(f"meta:{name}", (name, value)):
                    raise ValueError(f"meta entry {name!r} differs from its checksum")
                out[name] = json.loads(value)
            return out
        except (sqlite3.Error, ValueError) as exc:
            raise AtlasDamaged(f"the atlas {self.folder} is damaged ({' '.join(str(exc).split())[:160]}): "
                               "reinstall the project to restore it") from None

    def check(self) -> tuple[int, list[str]]:
        """(entries verified, problems): the seal, the index, every row's values and checksum, every picture's
        checksum."""
        try:
            self.checksums()
        except AtlasDamaged as exc:
            return 0, [str(exc)]
        try:
            rows, bad = self.entries(sealed=True)
        except (sqlite3.Error, AtlasDamaged) as exc:
            return 0, [f"the atlas index {self.folder / INDEX} is damaged ({' '.join(str(exc).split())[:160]}): "
                       "reinstall the project to restore it"]
        problems = []
        if bad:
            problems.append(f"{len(bad)} entries of the atlas {self.folder} are damaged and set aside (they are "
                            "rendered again when asked for; reinstall the project to restore them): "
                            + "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else ""))
        return len(rows) - len(bad), problems

    def entries(self, sealed: bool) -> tuple[list, list[str]]:
        """(rows, "unit N: why" for each damaged one): each row's values, and its picture against the row's digest;
        `sealed`: also each row and picture against SHA256SUMS. sqlite3.Error when the index cannot be read."""
        from .store import row_problem

        sums = self.checksums() if sealed else {}
        con = self._connect()
        try:
            rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM results NOT INDEXED").fetchall()
        finally:
            con.close()
        bad = []
        for r in rows:
            why = row_problem(r, ".webp", checksum_required=True)
            if why is None and sealed and not self._trusted and sums.get(f"row:{r['key']}") != row_digest(tuple(r)):
                why = "differs from its checksum"  # said once in the caller's line, not logged per entry
            if why is None:
                try:
                    ok = file_digest(self.folder / r["image"]) == r["sha256"] and (
                        not sealed or sums.get(r["image"]) == r["sha256"])
                except OSError:
                    ok = False
                why = None if ok else "picture missing or differs from its checksum"
            if why is not None:
                bad.append(f"unit {r['unit'] if isinstance(r['unit'], int) else '?'}: {why}")
        return rows, bad

    def refuse_unless_sound(self, action: str) -> None:
        """Raise UserError (one line, nothing changed) unless every entry matches the atlas's seal; an unsealed
        atlas's entries must match their rows' own picture digests (what `seal` can vouch for)."""
        try:
            sealed = read_checksums(self.folder) is not None
            _, bad = self.entries(sealed=sealed)
        except AtlasDamaged as exc:
            raise UserError(f"atlas {action}: {exc} (nothing was changed)") from None
        except sqlite3.Error as exc:
            bad = [f"its index cannot be read ({' '.join(str(exc).split())[:120]})"]
        if bad:
            raise UserError(f"atlas {action}: the atlas {self.folder} does not match its seal ({len(bad)} "
                            f"entr{'y' if len(bad) == 1 else 'ies'}: "
                            + "; ".join(bad[:3]) + (" ..." if len(bad) > 3 else "") + "), so it was not "
                            f"{'sealed' if action == 'seal' else 'keyed again'} and nothing was changed; reinstall the "
                            "project to restore it, or pack it again from its results (`atlas pack`)")


# A pack or rekey works in a hidden folder beside the atlas, ".NAME.dgnam-PID-HEX.part", and moves the old atlas
# to ".NAME.dgnam-PID-HEX.old" for the instant of the swap; both name their writer, so a killed one's are found.
_WORK = re.compile(r"\.(.+)\.dgnam-([0-9]{1,10})-[0-9a-f]{32}\.(part|old)")
TEST_KILL_REKEY = "DGNAM_TEST_KILL_REKEY_AFTER"  # tests only: SIGKILL a rekey after copying that many files


def _work_folder(out: Path, kind: str) -> Path:
    return out.with_name(f".{out.name}.dgnam-{os.getpid()}-{uuid.uuid4().hex}.{kind}")


def tidy(root: Path) -> list[str]:
    """What a pack or rekey killed mid-way left in the atlas folder `root`: an atlas moved aside for a swap that
    never came is put back, a work folder whose writer is gone is removed (only folders named as we name them)."""
    from .store import _pid_alive

    done = []
    try:
        found = [(p, _WORK.fullmatch(p.name)) for p in Path(root).iterdir()]
    except OSError:
        return done
    for p, m in sorted((x for x in found if x[1]), key=lambda x: x[1].group(3) != "old"):  # put back first
        if not p.is_dir() or p.is_symlink() or _pid_alive(int(m.group(2))):
            continue
        out = p.with_name(m.group(1))
        if m.group(3) == "old" and not out.exists():
            p.replace(out)
            done.append(f"put back the atlas {out}, moved aside by a run that was killed")
        else:
            shutil.rmtree(p)
            done.append(f"removed {p}, left by a run that was killed")
    return done


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace the atlas `out` by the finished folder `tmp` (renames only: a kill leaves one of the two whole)."""
    if out.exists():
        old = _work_folder(out, "old")
        out.replace(old)
        tmp.replace(out)
        shutil.rmtree(old)
    else:
        tmp.replace(out)


def all_atlases(folder: Optional[Path] = None) -> list[Atlas]:
    return [Atlas(d) for d in atlas_dirs(folder)]


def _same_request(r, ident) -> bool:
    """Whether a stored result answers the request `ident` stands for, also when it was stored under an older key
    scheme: the same weights file (by content, or by the name and size older keys used), prior and settings (a
    setting older results lack had its default; their "auto" path is the one their device resolves it to)."""
    from . import accel as Acc
    from . import targets as T
    from . import weights as W
    from .request import Settings

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
    from .request import Request, Settings, resolve
    from .store import ResultsStore

    out = Path(out)
    if out.is_symlink() or (out.exists() and not (out.is_dir() and (out / INDEX).is_file())):
        raise UserError(f"--out {out} exists and is not an atlas folder: give a new folder (an atlas is replaced "
                        "as a whole)")
    if not (Path(store_root) / "results.sqlite").is_file():
        raise UserError(f"--store {store_root} holds no results database: give the folder that `python -m "
                        "dgnam_engine precompute --store` filled (nothing was created)")
    spec = T.get_spec(model)
    layer = layer or spec.output_layer
    store = ResultsStore(store_root)
    results = store.query(model=model, layer=layer)
    settings = Settings(prior=prior, n_iters=n_iters)
    rows, missing, pictures = [], 0, {}
    seen = set()
    for r in results:
        [ident] = resolve(Request(model, [r.unit], layer, settings, [r.seed])).identities()
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
    out.parent.mkdir(parents=True, exist_ok=True)
    tidy(out.parent)
    # this pack's own temporary folder, removed by its exact name if the pack fails
    tmp = _work_folder(out, "part")
    tmp.mkdir()
    try:
        _write_atlas(tmp, pictures, rows, model, layer)
        _swap_in(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    size = sum(f.stat().st_size for f in out.iterdir())
    return {"atlas": str(out), "units": len(rows), "skipped": missing, "bytes": size}


def _write_atlas(tmp: Path, pictures: dict, rows: list, model: str, layer: str) -> None:
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
    write_checksums(tmp)


def rekey(folder: Path) -> dict:
    """Key an atlas's rows as the results store keys their requests today (after store.KEY_VERSION changed): each
    row's request (model, layer, unit, seed, prior, steps) is resolved again and must answer to what the row holds;
    the atlas is copied beside itself with each picture named after its row's new key, sealed, checked, and swapped
    in. Raises UserError, changing nothing, if one row does not answer or the atlas does not match its seal."""
    from types import SimpleNamespace

    from .request import Request, Settings, resolve

    folder = Path(folder)
    Atlas(folder).refuse_unless_sound("rekey")
    con = sqlite3.connect(f"file:{folder / INDEX}?mode=ro&immutable=1", uri=True)
    con.row_factory = sqlite3.Row
    try:
        rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM results").fetchall()
    finally:
        con.close()
    updates, settings = [], None
    for r in rows:
        st = json.loads(r["settings"])
        req = Request(r["model"], [r["unit"]], r["layer"], Settings(prior=st.get("prior"), n_iters=st["n_iters"]),
                      [r["seed"]])
        [ident] = resolve(req).identities()
        if not _same_request(SimpleNamespace(**{**dict(r), "settings": st}), ident):
            raise UserError(f"{folder}: unit {r['unit']} was made with other settings or weights than its "
                            "request resolves to here; pack the atlas again instead")
        settings = {**st, **{k: v for k, v in ident.settings.items() if v is not None}}
        updates.append((ident.key, json.dumps(settings, sort_keys=True), f"{ident.key}.webp", r["key"], r["image"]))
    tidy(folder.parent)
    tmp = _work_folder(folder, "part")
    tmp.mkdir()
    try:
        renamed = {u[4]: u[2] for u in updates}  # a picture is named by its row's key
        kill_after = os.environ.get(TEST_KILL_REKEY)
        for n, p in enumerate(sorted(folder.iterdir()), 1):
            if p.is_file() and not p.is_symlink() and p.name != CHECKSUMS:
                shutil.copyfile(p, tmp / renamed.get(p.name, p.name))
            if str(n) == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        con = sqlite3.connect(tmp / INDEX)
        try:
            con.executemany("UPDATE results SET key = ?, settings = ?, image = ? WHERE key = ?",
                            [u[:4] for u in updates])
            if settings is not None:
                con.execute("UPDATE meta SET value = ? WHERE name = 'settings'", (json.dumps(settings),))
            con.commit()
            con.execute("VACUUM")
        finally:
            con.close()
        write_checksums(tmp)  # the rows changed: their digests (and the index's) with them
        good, problems = Atlas(tmp).check()
        if problems or good != len(updates):
            raise UserError(f"atlas rekey: the rekeyed copy of {folder} does not verify ({'; '.join(problems)}); "
                            "nothing was changed")
        _swap_in(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return {"atlas": str(folder), "units": len(updates)}


def seal(folder: Path) -> int:
    """Write an atlas's SHA256SUMS, refusing (UserError, nothing changed) an atlas that does not match its seal."""
    Atlas(folder).refuse_unless_sound("seal")
    return write_checksums(folder)


def listing(a: Atlas) -> dict:
    """What `atlas list` says of one atlas: its network, layer, units, and how many of them are served."""
    m = a.meta()
    try:
        present = sum(1 for r in a.rows() if (a.folder / r["image"]).is_file())
    except sqlite3.Error as exc:
        raise AtlasDamaged(f"the atlas {a.folder} is damaged ({' '.join(str(exc).split())[:160]}): reinstall the "
                           "project to restore it") from None
    return {"atlas": a.folder.name, "folder": str(a.folder), "model": m.get("model"), "layer": m.get("layer"),
            "units": m.get("units"), "present": present}


def cmd_atlas(args) -> int:
    if args.action == "pack":
        from . import targets as T

        layer = args.layer or T.get_spec(args.model).output_layer
        out = Path(args.out) if args.out else atlas_root() / f"{args.model.replace('/', '_')}--{layer}"
        info = pack(Path(args.store), args.model, layer, out, args.prior, args.iters)
        print(json_out.dumps(info) if args.json else
              f"atlas: {info['units']} units -> {info['atlas']} ({info['bytes'] / 1e6:.1f} MB)")
        return 0
    if args.action in ("rekey", "seal"):
        for line in tidy(atlas_root()):
            print(line)
        atlases = all_atlases()
        for a in atlases:  # all or none: one that does not match its seal stops the command before any is changed
            a.refuse_unless_sound(args.action)
        for a in atlases:
            if args.action == "seal":
                print(f"{a.folder.name}: {seal(a.folder)} checksums -> {a.folder / CHECKSUMS}")
                continue
            info = rekey(a.folder)
            print(json_out.dumps(info) if args.json else
                  f"atlas: {info['units']} units keyed again in {info['atlas']}")
        return 0
    damaged, listed = [], []
    for a in all_atlases():
        try:
            listed.append(listing(a))
        except AtlasDamaged as exc:
            damaged.append(str(exc))
    if args.json:
        print(json_out.dumps(listed))
    for m in listed if not args.json else []:
        print(f"{m['atlas']}: {m['model']} {m['layer']}, {m['units']} units ({m['present']} present)")
    if damaged:
        raise UserError("; ".join(damaged))
    return 0


def add_parser(sub) -> None:
    from .cli_options import whole_arg

    s = sub.add_parser("atlas", help="pack precomputed results into a shipped atlas, list the atlases, seal them, "
                       "or key them again after the key scheme changed")
    s.add_argument("action", choices=["pack", "list", "seal", "rekey"],
                   help="seal: write the checksums of the atlases as they are (SHA256SUMS); rekey: key their rows "
                   "as the store keys the same requests today (and seal them)")
    s.add_argument("--store", default="data/atlas-build", help="results folder filled by precompute")
    s.add_argument("--model", default="efficientnet_lite0")
    s.add_argument("--layer", default=None)
    s.add_argument("--prior", default=None)
    s.add_argument("--iters", type=whole_arg("--iters"), default=None,
                   help="the steps the results were made with (default: 200)")
    s.add_argument("--out", default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_atlas)

