""""Guess the neuron": the two-alternative task of Borowski et al. (ICLR 2021). For a unit, a person sees reference
pictures of one condition (the unit's top real photos, DGN-AM with the default prior, the pixel baseline, MACO, or
none) and two query photos the references do not use: one that drives the unit strongly, one weakly. They pick the
one they think drives it more. docs/quiz.md says exactly how the photos are chosen.

Queries come from a photo pool whose Lite0 pooled features are known, so a unit of the class layer (the logits, a
linear map of those features) or of the pooled layer itself has its activation for every photo without running the
network on the photos: the 290 training photos that ship (assets/corpus_index/, 241 of them with a thumbnail that
may be shown) or a user's folder (indexed once, at full size: better). Answers go to `quiz.sqlite` in the results
folder (a session id and the answer, no personal data); `quiz export --csv` writes them out."""
from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .errors import UserError

CONDITIONS = ("natural", "dgnam", "pixel", "maco", "none")
CONDITION_NAMES = {"natural": "the unit's top real photos", "dgnam": "DGN-AM (default prior)",
                   "pixel": "pixel-space baseline", "maco": "MACO", "none": "no explanation"}
METHOD_PRIOR = {"pixel": "pixel", "maco": "maco"}  # how the store names the methods without a generator
REFERENCES = 9  # reference photos per question, as Borowski et al.
MODEL = "efficientnet_lite0"  # the network whose pooled features the pools carry
LAYERS = ("classifier", "pooled")  # the layers whose activations follow from those features
DB_NAME = "quiz.sqlite"
Z95 = 1.959963984540054
_ROOM = re.compile(r"^[A-Z0-9]{4,12}$")
ROOM_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a projector


# --- the numbers ------------------------------------------------------------------------------------------------

def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials (95% by default); (nan, nan) for n = 0."""
    if n <= 0:
        return (math.nan, math.nan)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def score(k: int, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"correct": int(k), "questions": int(n), "score": round(k / n, 4) if n else None,
            "ci95": [round(lo, 4), round(hi, 4)] if n else None}


# --- the photo pool ---------------------------------------------------------------------------------------------

@dataclass
class Pool:
    """Photos that can be shown, with their Lite0 pooled features (rows in the same order)."""
    name: str
    files: list[str]
    features: np.ndarray  # (N, 1280)
    picture: Callable[[int], np.ndarray]  # RGB uint8 of photo i
    shipped: bool
    _logits: Optional[np.ndarray] = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.files)

    def activations(self, layer: str) -> np.ndarray:
        """(N, units) activations of `layer` for every photo: the pooled features themselves, or the logits
        (Lite0's classifier applied to them, which is exactly what the network computes from them)."""
        if layer == "pooled":
            return self.features.astype(np.float64)
        if layer == "classifier":
            if self._logits is None:
                w, b = classifier_weights()
                self._logits = self.features.astype(np.float64) @ w.T + b
            return self._logits
        raise UserError(f"the quiz knows the activations of layers {', '.join(LAYERS)} of {MODEL}, not {layer!r}")

    def subset(self, rows: Sequence[int]) -> "Pool":
        """The same photos, only these rows (a smaller pool, for a quick check)."""
        rows = [int(r) for r in rows]
        return Pool(f"{self.name} ({len(rows)} of them)", [self.files[r] for r in rows], self.features[rows],
                    lambda i, p=self.picture: p(rows[i]), self.shipped)


def classifier_weights() -> tuple[np.ndarray, np.ndarray]:
    from .runner import get_target

    head = get_target(MODEL).model.classifier
    return head.weight.detach().double().cpu().numpy(), head.bias.detach().double().cpu().numpy()


_pools: dict = {}


def shipped_pool() -> Pool:
    """The training photos that ship with a thumbnail (the others may not be shown: their licences)."""
    if "shipped" not in _pools:
        from . import neighbours as N

        coll = N.shipped()
        rows = [i for i, p in enumerate(coll.photos) if p.get("thumb") is not None]
        _pools["shipped"] = Pool(coll.name, [coll.photos[i]["file"] for i in rows],
                                 np.asarray(coll.features[rows], np.float32),
                                 lambda i, c=coll, r=rows: c.thumb(r[i]), True)
    return _pools["shipped"]


def folder_pool(folder: str | os.PathLike, cache_root: Path) -> Pool:
    """A user's folder, indexed once in Lite0's pooled features (neighbours.folder_collection's cache)."""
    from . import neighbours as N
    from .photos import read_photo, square

    coll = N.folder_collection(Path(folder), N.DEFAULT_SPACE, cache_root)
    if len(coll.photos) < 20:
        raise UserError(f"{folder} has {len(coll.photos)} readable photos; the quiz needs at least 20")
    paths = [p["path"] for p in coll.photos]
    return Pool(coll.name, [p["file"] for p in coll.photos], np.asarray(coll.features, np.float32),
                lambda i: square(read_photo(paths[i]), 224), False)


def answerable_units(pool: Pool, layer: str, count: int) -> list[int]:
    """The `count` units the pool answers best: the largest gap between its top tenth and its bottom half, in
    standard deviations of the unit's activations over the pool (a unit no photo drives gives a noisy quiz)."""
    acts = pool.activations(layer)
    srt = np.sort(acts, 0)[::-1]
    n = len(acts)
    gap = srt[:top_count(n)].mean(0) - srt[n - n // 2:].mean(0)
    sep = gap / np.maximum(acts.std(0), 1e-9)
    return [int(u) for u in np.argsort(-sep, kind="stable")[:count]]


# --- the protocol -----------------------------------------------------------------------------------------------

def top_count(n: int) -> int:
    return max(1, math.ceil(n / 10))


@dataclass
class Question:
    number: int
    unit: int
    condition: str
    strong: int  # pool index of the photo that drives the unit strongly
    weak: int
    refs: list[int]  # pool indices of the unit's top photos, the queries left out (shown for "natural")
    strong_first: bool  # whether the strong photo is shown as choice 1

    @property
    def choices(self) -> tuple[int, int]:
        return (self.strong, self.weak) if self.strong_first else (self.weak, self.strong)


def rng_for(*parts) -> np.random.Generator:
    """A generator fixed by its parts (a session's seed, a unit, a question number): the same quiz again."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def pick(acts: np.ndarray, rng: np.random.Generator, n_refs: int = REFERENCES) -> tuple[int, int, list[int]]:
    """(strong, weak, references) for one unit's activations over the pool: strong drawn from the top tenth,
    weak from the bottom half, references the most activating photos left once both are out."""
    order = np.argsort(-acts, kind="stable")
    n = len(order)
    strong = int(rng.choice(order[:top_count(n)]))
    weak = int(rng.choice(order[n - n // 2:]))
    refs = [int(j) for j in order if j not in (strong, weak)][:n_refs]
    return strong, weak, refs


def make_questions(pool: Pool, layer: str, units: Sequence[int], conditions: Sequence[str], n: int,
                   seed) -> list[Question]:
    """n questions: units in turn (shuffled by the seed), conditions balanced over the questions."""
    if not units or not conditions:
        raise UserError("a quiz needs at least one unit and one condition")
    acts = pool.activations(layer)
    rng = rng_for("quiz", seed)
    units = [int(u) for u in rng.permutation(list(units))]
    conds = [conditions[i % len(conditions)] for i in range(n)]
    rng.shuffle(conds)
    out = []
    for i in range(n):
        u = units[i % len(units)]
        r = rng_for("question", seed, u, i)
        strong, weak, refs = pick(acts[:, u], r)
        out.append(Question(i + 1, u, conds[i], strong, weak, refs, bool(r.integers(2))))
    return out


# --- reference pictures of the synthetic conditions -------------------------------------------------------------

def _plain_run(res) -> bool:
    """A run of the unit alone from a random start (no photo start, no combination, no map position)."""
    s = res.settings or {}
    return not (s.get("init_image") or s.get("objective") or s.get("position"))


def dgnam_priors() -> list[str]:
    from . import priors as P

    return list(dict.fromkeys([P.default_prior_name(), P.DEMO_DEFAULT]))


def stored_pictures(store, model: str, layer: str, unit: int, condition: str,
                    limit: int = REFERENCES) -> tuple[list[np.ndarray], Optional[str]]:
    """The stored (or shipped atlas) pictures of a synthetic condition for a unit, and the prior they used: DGN-AM
    with the default prior (else the atlas's demo prior), the pixel baseline or MACO."""
    from PIL import Image

    priors = dgnam_priors() if condition == "dgnam" else [METHOD_PRIOR[condition]]
    for prior in priors:
        found = [r for r in store.query(model=model, layer=layer, unit=int(unit), prior=prior) if _plain_run(r)]
        pics = []
        for r in found[:limit]:
            data = store.picture_bytes(r)
            if data:
                pics.append(np.array(Image.open(io.BytesIO(data)).convert("RGB")))
        if pics:
            return pics, prior
    return [], None


# --- answers ----------------------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    session TEXT NOT NULL, room TEXT NOT NULL, question INTEGER NOT NULL, model TEXT NOT NULL, layer TEXT NOT NULL,
    unit INTEGER NOT NULL, condition TEXT NOT NULL, strong TEXT NOT NULL, weak TEXT NOT NULL, picked TEXT NOT NULL,
    correct INTEGER NOT NULL, created REAL NOT NULL, PRIMARY KEY (session, room, question)
);
CREATE INDEX IF NOT EXISTS answers_room ON answers (room);
"""
CSV_COLUMNS = ("created", "session", "room", "question", "model", "layer", "unit", "condition", "strong_photo",
               "weak_photo", "picked_photo", "correct")


def new_session() -> str:
    return secrets.token_hex(8)


def new_room() -> str:
    return "".join(secrets.choice(ROOM_ALPHABET) for _ in range(6))


def room_problem(code: str) -> Optional[str]:
    if not _ROOM.match(code or ""):
        return f"the class code {code!r} is not one: a code is 4 to 12 capital letters and digits, like K7QD2M"
    return None


class AnswersDB:
    """`quiz.sqlite` in the results folder (beside results.sqlite). A read-only folder can still show tallies."""

    def __init__(self, root: str | os.PathLike):
        from .store import read_only_message

        self.root = Path(root)
        self.path = self.root / DB_NAME
        self._read_only_line = read_only_message(self.root)

    def _connect(self, write: bool) -> sqlite3.Connection:
        from .store import connect_read_only

        if not write:
            if not self.path.is_file():
                return None
            return connect_read_only(self.path)
        self.root.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout=30000")
        con.executescript(_SCHEMA)
        return con

    def _fail(self, exc: Exception) -> UserError:
        from .store import damaged_message, full_disk_message, is_full_disk

        msg = str(exc)
        if isinstance(exc, OSError) or "readonly" in msg or "read-only" in msg:
            if is_full_disk(exc, self.root if self.root.is_dir() else None):
                return UserError(full_disk_message(self.root, "the answer"))
            return UserError(self._read_only_line)
        return UserError(damaged_message(self.path, msg))

    def record(self, session: str, room: str, q: Question, model: str, layer: str, pool: Pool,
               picked: int) -> bool:
        """Store one answer (once per session, room and question: a second click changes nothing). True if new."""
        row = (session, room or "", q.number, model, layer, q.unit, q.condition, pool.files[q.strong],
               pool.files[q.weak], pool.files[picked], int(picked == q.strong), time.time())
        try:
            con = self._connect(True)
            try:
                cur = con.execute("INSERT OR IGNORE INTO answers VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)
                return cur.rowcount == 1
            finally:
                con.close()
        except (sqlite3.Error, OSError) as exc:
            raise self._fail(exc) from None

    def rows(self, room: Optional[str] = None) -> list[tuple]:
        try:
            con = self._connect(False)
            if con is None:
                return []
            try:
                sql = "SELECT * FROM answers" + (" WHERE room = ?" if room is not None else "")
                return con.execute(sql + " ORDER BY created", (room,) if room is not None else ()).fetchall()
            finally:
                con.close()
        except sqlite3.Error as exc:
            raise self._fail(exc) from None

    def tally(self, room: Optional[str] = None) -> dict:
        """Per condition: correct, questions, score and its 95% Wilson interval; also the people who answered."""
        rows = self.rows(room)
        out = {}
        for c in CONDITIONS:
            got = [r[10] for r in rows if r[6] == c]
            if got:
                out[c] = score(sum(got), len(got))
        return {"room": room, "answers": len(rows), "people": len({r[0] for r in rows}), "conditions": out}

    def csv_text(self, room: Optional[str] = None) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in self.rows(room):
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r[11]))
            w.writerow([created, *r[:11]])
        return buf.getvalue()


# --- a quiz for people ------------------------------------------------------------------------------------------

QUIZ_QUESTIONS = 10
BASE_CONDITIONS = ("natural", "dgnam", "none")


def plan(store, seed, n: int = QUIZ_QUESTIONS, layer: str = "classifier",
         pool: Optional[Pool] = None) -> tuple[Pool, list[Question]]:
    """The quiz one seed gives (a class code: every student the same questions): the n class units the pool
    answers best, conditions balanced over the questions; pixel and MACO join when every unit has them stored."""
    pool = pool or shipped_pool()
    units = answerable_units(pool, layer, n)
    conds = [c for c in BASE_CONDITIONS if c != "dgnam" or all(stored_pictures(store, MODEL, layer, u, c, 1)[0]
                                                                for u in units)]
    conds += [c for c in ("pixel", "maco") if all(stored_pictures(store, MODEL, layer, u, c, 1)[0] for u in units)]
    return pool, make_questions(pool, layer, units, conds, n, seed)


def references(store, pool: Pool, layer: str, q: Question) -> list[np.ndarray]:
    """The pictures a person sees for a question's condition (none for "none")."""
    if q.condition == "natural":
        return [pool.picture(j) for j in q.refs]
    if q.condition == "none":
        return []
    return stored_pictures(store, MODEL, layer, q.unit, q.condition)[0]
