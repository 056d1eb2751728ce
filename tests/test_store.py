"""The results store: keys, reuse, atomic writes and concurrent writers, on real SQLite files and PNGs."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import sqlite3
import subprocess
import time
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgnam_engine.store import ResultsStore, default_root, file_identity, key_for


def fake_result(unit: int, seed: int = 0, prior: str = "fc6", value: float = 1.0):
    """A result with the fields of runner.UnitResult; the image encodes the unit so mix-ups are visible."""
    img = np.zeros((16, 16, 3), np.uint8)
    img[..., 0] = unit % 256
    img[..., 1] = seed % 256
    return types.SimpleNamespace(model="efficientnet_lite0", layer="classifier", unit=unit, label=f"class {unit}",
                                 prior=prior, prior_kind="original", seed=seed, activation_start=0.0,
                                 activation_final=value, activations=[0.0, value / 2, value], image=img,
                                 seconds=0.1, device="cpu", weights="/x/lite0.pth")


BASE = dict(model="efficientnet_lite0", weights_id="w:1", layer="classifier", unit=967, prior_id="fc6@f:2",
            settings={"n_iters": 200, "lr_start": None}, seed=0)


def test_key_is_stable_and_depends_on_every_part():
    k = key_for(**BASE)
    assert k == key_for(**{**BASE, "settings": {"lr_start": None, "n_iters": 200}})  # order does not matter
    changed = [dict(model="alexnet"), dict(weights_id="w:2"), dict(layer="pooled"), dict(unit=968),
               dict(prior_id="fc7@f:2"), dict(settings={"n_iters": 201, "lr_start": None}), dict(seed=1)]
    keys = {key_for(**{**BASE, **c}) for c in changed}
    assert len(keys) == len(changed) and k not in keys


def test_default_root_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "d"))
    assert default_root() == tmp_path / "d"
    monkeypatch.delenv("DGNAM_DATA_DIR")
    assert default_root().name == "dgnam-studio"


def test_put_get_query_and_reuse(tmp_path):
    store = ResultsStore(tmp_path)
    assert store.get("nope") is None and not store.has("nope")
    key = key_for(**BASE)
    saved = store.put(fake_result(967, value=3.5), key, {"n_iters": 3}, "w:1")
    assert store.has(key) and saved.activation_final == 3.5 and saved.settings == {"n_iters": 3}
    img = np.asarray(Image.open(saved.image_path))
    assert img.shape == (16, 16, 3) and img[0, 0, 0] == 967 % 256
    # a new store object on the same folder (another session, another process) finds it again
    again = ResultsStore(tmp_path).get(key)
    assert again is not None and again.activations == [0.0, 1.75, 3.5] and again.weights_id == "w:1"
    store.put(fake_result(5, prior="pixel"), key_for(**{**BASE, "unit": 5}))
    assert [r.unit for r in store.query(prior="pixel")] == [5]
    assert {r.unit for r in store.query(model="efficientnet_lite0", layer="classifier")} == {5, 967}
    assert store.distinct("prior") == ["fc6", "pixel"]
    assert len(store) == 2
    assert not list(store.images.glob("*.part")) and not list(store.images.glob(".*"))


def test_missing_png_means_not_stored(tmp_path):
    store = ResultsStore(tmp_path)
    key = key_for(**BASE)
    store.put(fake_result(1), key).image_path.unlink()
    assert store.get(key) is None and store.query() == []


def test_bad_image_stores_nothing(tmp_path):
    store = ResultsStore(tmp_path)
    bad = fake_result(1)
    bad.image = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError):
        store.put(bad, "k")
    assert len(store) == 0 and not any(store.images.iterdir())


def identify(model, unit, layer=None, settings=None, seed=0, **kw):
    """The store identity of one unit of a request, as every front end finds it (resolve, then store.identify)."""
    from dgnam_engine.request import Request, Settings, resolve

    [ident] = resolve(Request(model, [unit], layer, settings or Settings(), [seed], **kw)).identities()
    return ident


def test_identify_resolves_defaults_without_loading(fc6_file):
    from dgnam_engine.runner import Settings, _priors, _targets, clear_caches

    clear_caches()
    a = identify("efficientnet_lite0", 967, None, Settings(prior="fc6", n_iters=None), 0, prior_file=str(fc6_file))
    b = identify("efficientnet_lite0", 967, "classifier", Settings(prior="fc6", n_iters=200, lr_start=2.0), 0,
                 prior_file=str(fc6_file))
    assert a.key == b.key and a.settings["n_iters"] == 200 and a.settings["lr_start"] == 2.0  # fc6: scale 1
    assert a.prior_id == f"fc6@{file_identity(fc6_file)}"
    assert a.weights_id.startswith("efficientnet-lite0-57934424.pth:")
    pixel = identify("efficientnet_lite0", 967, settings=Settings(method="pixel"))
    assert pixel.prior_id == "pixel" and pixel.key != a.key
    assert identify("efficientnet_lite0", 967, settings=Settings(method="pixel"), seed=1).key != pixel.key
    assert not _targets and not _priors  # nothing was loaded


def _writer(root: str, worker: int, n: int) -> None:
    store = ResultsStore(root)
    for i in range(n):
        unit = worker * 1000 + i
        store.put(fake_result(unit, seed=worker), key_for(**{**BASE, "unit": unit}))
        store.put(fake_result(7, seed=0), key_for(**{**BASE, "unit": 7}))  # both write the same key too


def test_two_concurrent_writer_processes(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 25)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)  # spawned writers import torch first: slow on two busy cores
        assert p.exitcode == 0, f"writer exit code {p.exitcode} (None: still running)"
    store = ResultsStore(tmp_path)
    units = sorted(r.unit for r in store.query())
    assert units == [7] + list(range(1000, 1025)) + list(range(2000, 2025))
    for r in store.query():
        assert np.asarray(Image.open(r.image_path))[0, 0, 0] == r.unit % 256
    con = sqlite3.connect(Path(tmp_path) / "results.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not list(store.images.glob(".*.part"))


def _opener(roots: list, barrier, errors) -> None:
    for root in roots:
        barrier.wait()  # every process opens the same new store at the same moment
        try:
            ResultsStore(root)
        except Exception as exc:
            errors.put(repr(exc))


def test_processes_opening_a_new_store_at_once(tmp_path):
    # switching a new database to WAL locks it outright; without retrying, about one round in five failed here
    ctx = mp.get_context("spawn")
    roots = [str(tmp_path / f"r{i}") for i in range(25)]
    barrier, errors = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_opener, args=(roots, barrier, errors)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
        assert p.exitcode == 0, f"opener exit code {p.exitcode} (None: still running)"
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
    for root in roots:
        con = sqlite3.connect(Path(root) / "results.sqlite")
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0
        con.close()


def test_weights_identity_is_the_content_and_is_hashed_once(tmp_path, monkeypatch):
    import dgnam_engine.store as S

    a, b = tmp_path / "a" / "lite0.pth", tmp_path / "b" / "lite0.pth"
    for p, byte in ((a, 1), (b, 2)):
        p.parent.mkdir()
        p.write_bytes(bytes([byte]) * 4096)  # the same name and size, different content
    assert file_identity(a) != file_identity(b) and file_identity(a).startswith("lite0.pth:")
    cache = S._hash_cache_path()
    assert str(a.resolve()) in json.loads(cache.read_text())
    # remembered by (path, size, mtime): a new process reads the cache instead of the file
    S._hash_memo.clear()
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *x, **k: (reads.append(str(f)), real_open(f, *x, **k))[1])
    file_identity(a)
    monkeypatch.undo()
    assert str(a) not in reads
    # a changed file is hashed again; an unwritable cache only costs the hashing
    b.write_bytes(bytes([3]) * 4096)
    os.utime(b, ns=(1, 1))
    cache.write_text("not json")
    assert file_identity(b) != file_identity(a)  # a damaged cache is replaced
    assert str(b.resolve()) in json.loads(cache.read_text())
    cache.unlink()
    cache.mkdir()  # a cache that can be neither read nor written (a folder in its place)
    S._hash_memo.clear()
    try:
        assert file_identity(b) != file_identity(a)
    finally:
        cache.rmdir()
    assert file_identity(None) == "random" and file_identity(tmp_path / "nope.pth") == "nope.pth:missing"


def test_the_stores_own_leftover_part_files_are_removed_at_the_next_start(tmp_path):
    from dgnam_engine.imaging import save_png

    dead = _dead_pid()
    images = tmp_path / "store" / "images"
    images.mkdir(parents=True)
    killed = images / f".{'a' * 32}.{dead}.{'b' * 32}.part"
    live = images / f".{'c' * 32}.{os.getpid()}.{'d' * 32}.part"  # a writer that is still at work
    old = images / f".{'e' * 32}.{'f' * 32}.part"  # the former naming: removed once it is an hour old
    for p in (killed, live, old):
        p.write_bytes(b"half a png")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    ResultsStore(tmp_path / "store")
    assert not killed.exists() and live.exists() and not old.exists()
    # next to a --out file nothing but the write's own temporary file is touched: other programs' part files stay
    out = tmp_path / "out"
    out.mkdir()
    foreign = out / f".x.png.{dead}.part"
    foreign.write_bytes(b"half")
    save_png(np.zeros((4, 4, 3), np.uint8), out / "y.png")
    assert sorted(p.name for p in out.iterdir()) == [foreign.name, "y.png"]


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid
