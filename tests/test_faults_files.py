"""Issue 23, the files' part: no harm to files the product did not create, no corrupt value served, no batch merged
twice, honest messages for a full disk, a damaged examples index and an interrupted `index`, and read-only browsing.

Full disks are small tmpfs mounts (skipped with the reason when this user may not mount); read-only folders are met
as root without the capability to override permissions (see tests/test_faults.py).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dgnam_engine import atlas as A
from dgnam_engine import cli, dataset_index as D, store_cli
from dgnam_engine.store import ResultsStore, StoreError
from test_faults import fake_result, filled, one_error_line, run

ROOT = Path(__file__).resolve().parent.parent
SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"
PHOTOS = ["coffee.png", "chelsea.png", "astronaut.png", "brick.png", "coins.png", "grass.png"]
LAYERS = "classifier,blocks.5"


def files_of(folder: Path) -> dict:
    """Every entry: its kind, bytes (regular files) and modification time."""
    out = {}
    for p in folder.rglob("*"):
        st = os.lstat(p)
        out[str(p.relative_to(folder))] = (stat.S_IFMT(st.st_mode), st.st_mtime_ns,
                                           p.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return out


# ----- items 1 and 2: foreign files are never touched; special files are refused before any work ------------------

def test_visualize_beside_foreign_part_files_leaves_them_untouched(tmp_path):
    dl = tmp_path / "dl"
    dl.mkdir()
    video = dl / "holiday-video.mp4.part"  # a browser's unfinished download, two hours old
    video.write_bytes(b"half a video")
    os.utime(video, (time.time() - 7200, time.time() - 7200))
    (dl / "movie.2023.part").write_bytes(b"half a movie")  # "2023" is no process of ours
    (dl / f".bee.png.{_dead_pid()}.part").write_bytes(b"someone's")  # shaped like our old temp names
    before = files_of(dl)
    res = run(["visualize", "--model", "efficientnet_lite0", "--random-weights", "--unit", "309", "--iters", "1",
               "--out", str(dl / "bee.png"), "--quiet"], tmp_path)
    assert res.returncode == 0, res.stderr
    after = files_of(dl)
    assert {k: v for k, v in after.items() if k != "bee.png"} == before  # nothing else appeared or changed
    assert after["bee.png"][2].startswith(b"\x89PNG")


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _refused(argv: list[str], capsys) -> str:
    capsys.readouterr()
    t0 = time.perf_counter()
    code = cli.main(argv)
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (code, err)
    assert seconds < 5, seconds  # before any model is loaded
    return err[0]


def test_out_onto_a_fifo_a_device_a_folder_or_a_link_is_refused_in_one_line(tmp_path, capsys):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    targets = {"named pipe (FIFO)": fifo}
    if os.geteuid() == 0:  # a private copy of /dev/null's device node: the real one is never put at risk
        null = tmp_path / "null"
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets["character device"] = null
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "elsewhere.png")
    targets["symbolic link"] = link
    base = ["visualize", "--model", "efficientnet_lite0", "--random-weights", "--iters", "1", "--quiet"]
    before = files_of(tmp_path)
    for kind, path in targets.items():
        line = _refused(base + ["--unit", "1", "--out", str(path)], capsys)
        assert f"is a {kind}, not a regular file" in line and str(path) in line, line
    # the receptive-field picture beside --out (x_rf.png) is checked too: here a folder is in its way
    (tmp_path / "x_rf.png").mkdir()
    line = _refused(base + ["--layer", "blocks.5", "--unit", "7", "--xy", "2,5", "--out", str(tmp_path / "x.png")],
                    capsys)
    assert "x_rf.png is a folder, not a regular file" in line
    # several units: each picture's file in the folder
    units = tmp_path / "units"
    units.mkdir()
    os.mkfifo(units / "efficientnet_lite0_classifier_0002.png")
    line = _refused(base + ["--unit", "1,2", "--out", str(units)], capsys)
    assert "efficientnet_lite0_classifier_0002.png is a named pipe (FIFO)" in line
    assert {k: v for k, v in files_of(tmp_path).items() if k not in ("x_rf.png", "units",
            "units/efficientnet_lite0_classifier_0002.png")} == before
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISLNK(os.lstat(link).st_mode)


def test_out_onto_a_fifo_from_the_command_line(tmp_path):
    fifo = tmp_path / "bee.png"
    os.mkfifo(fifo)
    res = run(["visualize", "--model", "efficientnet_lite0", "--random-weights", "--unit", "309", "--out",
               str(fifo), "--json"], tmp_path)
    line = one_error_line(res)
    assert line == (f"error: --out {fifo} is a named pipe (FIFO), not a regular file: give a new file name or a "
                    "regular file to replace")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and res.stdout == ""


def test_train_prior_out_onto_a_fifo_is_refused_before_training(tmp_path, capsys):
    fifo = tmp_path / "mine.safetensors"
    os.mkfifo(fifo)
    line = _refused(["train-prior", "--layer", "blocks.5", "--images", str(tmp_path), "--out", str(fifo)], capsys)
    assert "is a named pipe (FIFO), not a regular file" in line and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_atlas_pack_never_replaces_a_folder_that_is_not_an_atlas(tmp_path, capsys):
    mine = tmp_path / "my-photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"a photo")
    line = _refused(["atlas", "pack", "--store", str(tmp_path / "build"), "--out", str(mine)], capsys)
    assert "exists and is not an atlas folder" in line
    assert (mine / "holiday.jpg").read_bytes() == b"a photo" and not (tmp_path / "build").exists()


# ----- item 3: a damaged value is set aside, reported and repaired; the atlas carries checksums ------------------

def test_a_damaged_value_in_a_results_row_is_set_aside_reported_and_removed_by_repair(tmp_path, capsys):
    store = filled(tmp_path, 4)
    con = sqlite3.connect(store.db_path)
    con.execute("UPDATE results SET settings = '{\"n_iters\": 2' WHERE unit = 1")  # cut short
    con.execute("UPDATE results SET activations = '[1.0, \"x\"]' WHERE unit = 2")
    con.execute("UPDATE results SET image = '../../../etc/hostname' WHERE unit = 3")  # never another file
    con.commit()
    con.close()
    fresh = ResultsStore(tmp_path)
    assert [r.unit for r in fresh.query()] == [0]
    assert fresh.get(f"{1:032x}") is None and fresh.query(unit=2) == []
    assert sorted(p["unit"] for p in fresh.problems()) == [1, 2, 3]
    assert cli.main(["store", "check", "--store", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "problem: 3 results hold damaged values and are set aside" in out, out
    assert cli.main(["store", "check", "--repair", "--store", str(tmp_path)]) == 0
    assert len(ResultsStore(tmp_path)) == 1 and store_cli.check(tmp_path)[1] == []


@pytest.fixture(scope="module")
def atlas_copy(tmp_path_factory) -> Path:
    """The shipped atlas, copied (it must verify as shipped)."""
    [shipped] = A.atlas_dirs(A.ATLAS_DIR)
    assert A.Atlas(shipped).check() == (1000, [])  # every row and picture matches its checksum
    dest = tmp_path_factory.mktemp("atlas") / shipped.name
    shutil.copytree(shipped, dest)
    return dest


def _served(folder: Path) -> tuple[dict, list]:
    store = ResultsStore(folder.parent / "store", atlases=[A.Atlas(folder)])
    got = store.query(model="efficientnet_lite0", layer="classifier")
    return {r.key: (r.unit, r.label, r.activation_final, r.activations, r.settings, r.image_path.name)
            for r in got}, got


def test_bit_flips_in_the_atlas_index_never_serve_a_wrong_value(atlas_copy, tmp_path):
    good, _ = _served(atlas_copy)
    assert len(good) == 1000
    index = (atlas_copy / A.INDEX).read_bytes()
    rng = random.Random(23)
    flips, set_aside = 40, 0
    for _ in range(flips):
        folder = tmp_path / f"flip{_}" / atlas_copy.name
        folder.mkdir(parents=True)
        for p in atlas_copy.iterdir():
            (folder / p.name).symlink_to(p) if p.name != A.INDEX else None
        data = bytearray(index)
        at = rng.randrange(100, len(data))  # past SQLite's header, which only makes the whole file unreadable
        data[at] ^= 1 << rng.randrange(8)
        (folder / A.INDEX).write_bytes(bytes(data))
        served, _ = _served(folder)  # never a traceback
        for key, value in served.items():
            assert good.get(key) == value, (at, key, value)  # nothing but the truth is served
        set_aside += 1000 - len(served)
        if len(served) < 1000:
            problems = A.Atlas(folder).check()[1]
            assert problems and "damaged" in problems[0], at
    assert set_aside > 0


def test_a_damaged_atlas_picture_or_checksum_line_costs_only_its_entry(atlas_copy, tmp_path, capsys):
    folder = tmp_path / atlas_copy.name
    shutil.copytree(atlas_copy, folder)
    pictures = sorted(folder.glob("*.webp"))
    pictures[0].write_bytes(pictures[0].read_bytes()[:-10] + b"0123456789")
    sums = (folder / A.CHECKSUMS).read_text().splitlines()
    row_line = next(i for i, ln in enumerate(sums) if ln.endswith(f"row:{pictures[1].stem}"))
    sums[row_line] = "0" * 64 + sums[row_line][64:]
    (folder / A.CHECKSUMS).write_text("\n".join(sums) + "\n")
    # values whose stored type changed (a flipped serial type: text read as a blob) or that are not UTF-8 any more
    con = sqlite3.connect(folder / A.INDEX)
    con.execute("UPDATE results SET label = CAST(label AS BLOB) WHERE key = ?", (pictures[2].stem,))
    con.execute("UPDATE results SET label = CAST(x'6a6f79ff' AS TEXT) WHERE key = ?", (pictures[3].stem,))
    con.commit()
    con.close()
    served, _ = _served(folder)
    assert len(served) == 996 and not {p.stem for p in pictures[:4]} & set(served)
    good, problems = A.Atlas(folder).check()
    assert good == 996 and "4 entries of the atlas" in problems[0]


def test_the_grid_checks_only_the_pictures_it_shows_and_never_shows_a_damaged_one(atlas_copy, tmp_path):
    """Browse's grid does not wait for a thousand checks: the query finds the pictures present, and each picture
    of the page shown is checked as it is read. A damaged one on that page gets no cell and is reported; one on
    another page is found when that page is shown."""
    import base64
    import re

    from app import atlas_view
    from app.names import LayerNames

    folder = tmp_path / atlas_copy.name
    shutil.copytree(atlas_copy, folder)
    store = ResultsStore(tmp_path / "store", atlases=[A.Atlas(folder)])
    results = sorted(store.query(model="efficientnet_lite0", layer="classifier", check_pictures=False),
                     key=lambda r: r.unit)
    for r in (results[3], results[500]):  # damaged after the query, before the grid reads them
        r.image_path.write_bytes(r.image_path.read_bytes()[:-10] + b"0123456789")
    names = LayerNames("efficientnet_lite0", "classifier", 1000, tuple(r.label for r in results))
    first = atlas_view.grid_html(results[:atlas_view.PAGE], names, store)
    assert first.count('class="atlas-cell"') == atlas_view.PAGE - 1 and "tiger shark (3)" not in first
    assert [p["unit"] for p in store.problems()] == [3]  # the page's own, found as it was read; unit 500 not read
    shown = re.search(r'src="data:image/webp;base64,([^"]+)"', first).group(1)
    assert base64.b64decode(shown) == results[0].image_path.read_bytes()  # the checked bytes, sent as they are
    again = store.query(model="efficientnet_lite0", layer="classifier", check_pictures=False)
    assert {r.unit for r in again} == set(range(1000)) - {3}  # set aside once found
    later = atlas_view.grid_html(results[480:480 + atlas_view.PAGE], names, store)
    assert f"{results[500].label} (500)" not in later and later.count('class="atlas-cell"') == atlas_view.PAGE - 1
    assert sorted(p["unit"] for p in store.problems()) == [3, 500]
    assert (folder / results[500].image_path.name).exists()  # part of the install: reported, never moved


def test_atlas_list_on_a_damaged_index_answers_in_one_line(atlas_copy, tmp_path):
    folder = tmp_path / "atlases" / atlas_copy.name
    shutil.copytree(atlas_copy, folder)
    data = bytearray((folder / A.INDEX).read_bytes())
    data[100:4096] = random.Random(1).randbytes(4096 - 100)  # the first page: the schema
    (folder / A.INDEX).write_bytes(bytes(data))
    env_base = tmp_path / "b"
    env_base.mkdir()
    res = subprocess.run([sys.executable, "-m", "dgnam_engine", "atlas", "list"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                     "DGNAM_ATLAS_DIR": str(tmp_path / "atlases")})
    line = one_error_line(res)
    assert f"the atlas {folder} is damaged" in line and "reinstall" in line
    # and the results store, the pages' source, goes on without it; `store check` names it
    assert ResultsStore(tmp_path / "s", atlases=[A.Atlas(folder)]).query() == []
    problems = A.Atlas(folder).check()[1]
    assert len(problems) == 1 and f"the atlas index {folder / A.INDEX} is damaged" in problems[0]


def test_store_check_covers_the_examples_index_and_the_atlases(indexed, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    shutil.copytree(indexed, data)
    monkeypatch.setenv("DGNAM_ATLAS_DIR", str(A.ATLAS_DIR))
    assert cli.main(["store", "check", "--store", str(data)]) == 0
    out = capsys.readouterr().out
    assert "ok: the examples index" in out and "ok: the atlas efficientnet_lite0--classifier: 1000 entries" in out


# ----- item 6: one transaction per batch; a kill between layers never merges a batch twice -----------------------

KILL_AT_SECOND_LAYER = """
import os, signal, sqlite3, sys
from dgnam_engine import cli
# kill the process the moment the second layer of the second batch is written: the worst moment for a resume
real, seen = sqlite3.connect, [0]
def trace(sql):
    if sql.startswith("DELETE FROM top"):
        seen[0] += 1
        if seen[0] == 4:
            os.kill(os.getpid(), signal.SIGKILL)
def connect(*a, **k):
    con = real(*a, **k)
    con.set_trace_callback(trace)
    return con
sqlite3.connect = connect
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        shutil.copy(SKIMAGE_DATA / name, d / name)
    return d


def index_args(photos: Path, data: Path) -> list[str]:
    return ["index", "--model", "efficientnet_lite0", "--layers", LAYERS, "--images", str(photos), "--batch", "2",
            "--store", str(data), "--quiet"]


def top_lists(data: Path) -> dict:
    con = sqlite3.connect(data / D.DB_NAME)
    try:
        out = {}
        for layer, unit, image in con.execute(
                "SELECT i.layer, t.unit, t.image FROM top t JOIN indexes i ON i.id = t.index_id "
                "ORDER BY i.layer, t.unit, t.rank"):
            out.setdefault((layer, unit), []).append(image)
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def indexed(photos, tmp_path_factory) -> Path:
    """A data folder with a clean, uninterrupted index of the photos."""
    data = tmp_path_factory.mktemp("indexed")
    res = run(index_args(photos, data), tmp_path_factory.mktemp("home"))
    assert res.returncode == 0, res.stderr
    return data


def test_a_kill_between_layers_never_merges_a_batch_twice(photos, indexed, tmp_path):
    data = tmp_path / "data"
    killed = run(index_args(photos, data), tmp_path, code=KILL_AT_SECOND_LAYER, extra=index_args(photos, data))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = run(index_args(photos, data), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    lists = top_lists(data)
    twice = [k for k, images in lists.items() if len(set(images)) != len(images)]
    assert not twice, f"{len(twice)} of {len(lists)} top lists hold a photo twice"
    assert lists == top_lists(indexed)  # the same as an index that was never interrupted


def test_merging_the_same_photos_again_lists_each_once():
    import torch

    tops: dict = {}
    vals = torch.tensor([[3.0, 1.0], [2.0, 5.0]])
    zeros = torch.zeros(2, 2, dtype=torch.long)
    D.merge_top(tops, vals, zeros, zeros, ["a.png", "b.png"], 3)
    D.merge_top(tops, vals, zeros, zeros, ["a.png", "b.png"], 3)  # a batch redone after a kill
    assert [t[1] for t in tops[0]] == ["a.png", "b.png"] and [t[1] for t in tops[1]] == ["b.png", "a.png"]


# ----- items 7 and 9: honest messages ---------------------------------------------------------------------------

@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m"):
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                         text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for a full disk ({res.stderr.strip() or res.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill the disk, then free `leave` bytes."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_a_full_disk_is_called_a_full_disk_and_nothing_stored_is_lost(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        store = filled(disk / "data", 3)
        fill(disk)
        with pytest.raises(StoreError) as e:  # no room for the picture
            store.put(fake_result(7), f"{7:032x}", {"n_iters": 2}, "w:1")
        assert "is full" in str(e.value) and "damaged" not in str(e.value) and "\n" not in str(e.value)
        os.unlink(disk / "filler")
        fill(disk, leave=4096)  # room for a small picture, not for the database to grow
        messages = []
        for u in range(8, 40):
            try:
                store.put(fake_result(u), f"{u:032x}", {"n_iters": 2}, "w:1")
            except StoreError as exc:
                messages.append(str(exc))
                break
        assert messages and "is full" in messages[0] and "store check --repair" not in messages[0], messages
        os.unlink(disk / "filler")
        assert [r.unit for r in ResultsStore(disk / "data").query()][-3:] == [2, 1, 0]  # nothing was lost
        assert store_cli.check(disk / "data")[1] == []


def test_a_picture_that_does_not_fit_leaves_no_partial_file(tmp_path):
    from dgnam_engine.imaging import save_png

    with small_disk(tmp_path / "disk") as disk:
        (disk / "dl").mkdir()
        (disk / "dl" / "movie.2023.part").write_bytes(b"theirs")
        fill(disk, leave=8192)
        noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)  # ~200 KB as a PNG
        with pytest.raises(OSError):
            save_png(noise, disk / "dl" / "bee.png")
        assert sorted(os.listdir(disk / "dl")) == ["movie.2023.part"]


def test_index_on_a_full_disk_answers_in_one_line(photos, tmp_path):
    with small_disk(tmp_path / "disk", "2m") as disk:
        (disk / "data").mkdir()
        fill(disk, leave=64 * 1024)  # room to create the index, not to store the first batch
        res = run(index_args(photos, disk / "data"), tmp_path)
        line = one_error_line(res)
        assert "is full" in line and "damaged" not in line and "writable" not in line, line


def test_a_damaged_examples_index_says_so_and_what_to_run(indexed, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(indexed, data)
    db = data / D.DB_NAME
    con = sqlite3.connect(db)
    page = con.execute("PRAGMA page_size").fetchone()[0]
    n_pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    with open(db, "r+b") as f:  # a page in the middle of the top lists: some units would crash, others lose rows
        f.seek(page * (n_pages // 2))
        f.write(random.Random(9).randbytes(page))
    capsys.readouterr()
    code = cli.main(["examples", "--model", "efficientnet_lite0", "--layer", "classifier", "--unit", "1",
                     "--store", str(data)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith(f"error: the examples index {db} is damaged (") and "\n" not in err
    assert "store check --repair" in err and "DGNAM_DATA_DIR to a writable" not in err
    ok, problems = store_cli.check(data)
    assert any(f"the examples index {db} is damaged" in p for p in problems), problems
    assert cli.main(["store", "check", "--repair", "--store", str(data)]) == 0
    assert "moved the damaged examples index" in capsys.readouterr().out
    assert not db.exists() and len(list(data.glob("examples.sqlite.damaged-*"))) == 1


def test_rows_missing_from_a_top_list_are_reported_not_shown_as_fewer_photos(indexed, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(indexed, data)
    con = sqlite3.connect(data / D.DB_NAME)
    con.execute("DELETE FROM top WHERE unit = 3 AND rank = 2")  # what a lost page does, without an error
    con.commit()
    con.close()
    db = D.ExamplesDB(data)
    from dgnam_engine.runner import get_target
    from dgnam_engine.store import file_identity

    wid = file_identity(get_target("efficientnet_lite0", "cpu").weights_path)
    idx, rows = D.examples(db, "efficientnet_lite0", wid, "classifier", 2, 9)
    assert len(rows) == 6
    with pytest.raises(D.ExamplesDamaged) as e:
        D.examples(db, "efficientnet_lite0", wid, "classifier", 3, 9)
    assert "unit 3 has missing or damaged photos" in str(e.value) and "store check --repair" in str(e.value)
    assert "top lists are short" in D.ExamplesDB(data).check()[0]


def test_ctrl_c_during_index_says_how_many_photos_were_saved(photos, tmp_path):
    data = tmp_path / "data"
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "HF_HUB_OFFLINE": "1"}
    args = [a for a in index_args(photos, data) if a != "--quiet"]
    args[args.index("--batch") + 1] = "1"
    proc = subprocess.Popen([sys.executable, "-m", "dgnam_engine", *args], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if line.startswith("indexed 2/"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, (lines, rest)
    last = rest.strip().splitlines()[-1]
    con = sqlite3.connect(data / D.DB_NAME)
    saved = con.execute("SELECT COUNT(DISTINCT image) FROM done_images").fetchone()[0]
    con.close()
    assert saved >= 2 and last == (f"interrupted: {saved} photos of this run are saved in {data / D.DB_NAME}; run "
                                   "the same command again to go on from there"), (saved, last)


# ----- item 10: a read-only data folder browses fully -------------------------------------------------------------

BROWSE = """
import json, os, sys
from streamlit.testing.v1 import AppTest
out = {}
for root in sys.argv[1:]:
    os.environ["DGNAM_DATA_DIR"] = root
    at = AppTest.from_file(%r, default_timeout=180)
    for k, v in {"model": "efficientnet_lite0", "layer": "classifier", "unit": "1"}.items():
        at.query_params[k] = v
    at.run()
    md = " ".join(str(m.value) for m in at.markdown) + " ".join(str(c.value) for c in at.caption)
    out[root] = {"exception": [str(e.value) for e in at.exception], "error": [str(e.value) for e in at.error],
                 "warning": [str(e.value) for e in at.warning], "images": len(at.image),
                 "subheaders": [str(s.value) for s in at.subheader], "text": md}
print(json.dumps(out))
""" % str(ROOT / "streamlit_app.py")


def test_a_read_only_data_folder_browses_fully(indexed, tmp_path):
    with_index, without = tmp_path / "data", tmp_path / "no-index"
    shutil.copytree(indexed, with_index)
    for data in (with_index, without):
        filled(data, 3)
    folders = [with_index, without]
    for p in [f for d in folders for f in [d, *d.rglob("*")]]:
        os.chmod(p, 0o555 if p.is_dir() else 0o444)
    before = {str(p): p.read_bytes() for d in folders for p in d.rglob("*") if p.is_file()}
    try:
        res = run([], tmp_path, as_nobody=True, code=BROWSE, extra=[str(d) for d in folders])
    finally:
        for p in [f for d in folders for f in [d, *d.rglob("*")]]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    assert res.returncode == 0, res.stderr[-3000:]
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    for data in folders:
        page = seen[str(data)]
        assert not page["exception"] and not page["error"], (data, page)
        assert "Real photos that drive this unit most" in page["text"], page
        assert "3 of 3 units with a picture" in page["text"], page  # the grid, below the card
    assert "Looked through 6 photos" in seen[str(with_index)]["text"] and seen[str(with_index)]["images"] >= 1 + 6
    assert "The data folder is read-only" in seen[str(without)]["text"]
    assert {str(p): p.read_bytes() for d in folders for p in d.rglob("*") if p.is_file()} == before
