"""Faults in the results folder, each ending in one line that names the folder and what to do, through the CLI
(exit code 2), on the pages, and in `store check`; nothing readable is lost.

Read-only folders: the tests may run as root (CI containers), whom permissions do not stop, so the commands that
must meet a read-only folder run as root without the capability to override permissions (`setpriv
--bounding-set=-dac_override,-dac_read_search`): then a chmod stops them as it stops any user. Run as an ordinary
user, the same chmod stops the test's own commands.
"""
from __future__ import annotations

import json
import re
import os
import random
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from dgnam_engine import cli, store_cli
from dgnam_engine.store import ResultsStore, StoreError

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")
DROP_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


def fake_result(unit: int):
    img = np.full((16, 16, 3), unit * 10 % 256, np.uint8)
    return types.SimpleNamespace(model="efficientnet_lite0", layer="classifier", unit=unit, label=f"class {unit}",
                                 prior="fc6", prior_kind="original", seed=0, activation_start=0.0,
                                 activation_final=float(unit), activations=[float(i) for i in range(40)],
                                 image=img, seconds=0.1, device="cpu")


def filled(root: Path, n: int = 3) -> ResultsStore:
    store = ResultsStore(root)
    for u in range(n):
        store.put(fake_result(u), f"{u:032x}", {"n_iters": 2}, "w:1")
    return store


@pytest.fixture
def shared_tmp(tmp_path):
    yield tmp_path
    for p in [tmp_path, *tmp_path.rglob("*")]:  # let pytest clean up
        if p.is_dir() and not p.is_symlink():
            os.chmod(p, 0o755)


def run(args: list[str], base: Path, as_nobody: bool = False, code: str | None = None, extra: list[str] = ()):
    """`python -m dgnam_engine ARGS` (or `python -c CODE`) with its own caches; `as_nobody`: bound by permissions
    like any user, even as root."""
    home = base / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
           "TORCH_HOME": str(home / "torch"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", code, *extra] if code else [sys.executable, "-m", "dgnam_engine", *args]
    if as_nobody and os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: a read-only folder cannot stop root")
        cmd = DROP_OVERRIDE + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def precompute(store: Path, base: Path, as_nobody: bool = False):
    return run(["precompute", "--model", "efficientnet_lite0", "--random-weights", "--units", "5", "--iters", "1",
                "--device", "cpu", "--store", str(store), "--quiet"], base, as_nobody)


# The Gallery and Setup pages as a script: the read-only cases run it as nobody.
PAGES = """
import json, os, sys
from streamlit.testing.v1 import AppTest
out = {}
for root in sys.argv[1:]:
    os.environ["DGNAM_DATA_DIR"] = root
    for page in ("pages/gallery.py", "pages/setup.py"):
        at = AppTest.from_file(%r, default_timeout=120)
        at.run()
        at.switch_page(page).run()
        out[root + " " + page] = {"exception": [str(e.value) for e in at.exception],
                                  "error": [str(e.value) for e in at.error], "images": len(at.image),
                                  "tables": len(at.table)}  # Setup's tables wrap (st.table)
print(json.dumps(out))
""" % APP


def pages(data_dirs: list[Path], base: Path, as_nobody: bool = False) -> dict:
    """What the Gallery and Setup pages show for each data folder: {(folder, page): elements}."""
    res = run([], base, as_nobody, code=PAGES, extra=[str(d) for d in data_dirs])
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return {tuple(k.split(" ")): v for k, v in out.items()}


def one_error_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (res.returncode, res.stderr)
    return lines[0]


def snapshot(root: Path) -> dict:
    """Every file's bytes, but SQLite's own -wal/-shm side files, which a reader of a WAL database may leave."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def shown(markdown: str) -> str:
    """What a reader sees of an error box's Markdown: CommonMark shows an escaped mark as itself, and the word
    joiners app.plain puts into addresses are invisible."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def _check_in_process(root: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(["store", "check", "--store", str(root)])
    return code, capsys.readouterr().out


def test_fault_matrix(shared_tmp, capsys):
    base = shared_tmp
    faults = {}

    # the data folder is a file
    as_file = base / "datafile"
    as_file.write_text("not a folder")
    faults["data dir is a file"] = (as_file, "is a file, not a folder", False)

    # garbage and truncated databases (pictures present: their rows are what a repair can keep)
    garbage = base / "garbage"
    filled(garbage)
    (garbage / "results.sqlite").write_bytes(random.Random(3).randbytes(20000))
    faults["garbage database"] = (garbage, "is damaged (file is not a database)", False)
    truncated = base / "truncated"
    filled(truncated, 60)
    db = truncated / "results.sqlite"
    db.write_bytes(db.read_bytes()[: db.stat().st_size * 6 // 10])
    faults["truncated database"] = (truncated, "is damaged (database disk image is malformed)", False)

    # read-only store, and a read-only pictures folder in a writable store
    ro = base / "readonly"
    filled(ro)
    for p in (ro, ro / "images"):
        os.chmod(p, 0o555)
    os.chmod(ro / "results.sqlite", 0o444)
    faults["read-only store"] = (ro, "is read-only: stored results can be browsed", True)
    ro_images = base / "readonly_images"
    filled(ro_images)
    os.chmod(ro_images, 0o777)
    os.chmod(ro_images / "results.sqlite", 0o666)
    os.chmod(ro_images / "images", 0o555)
    faults["read-only images"] = (ro_images, "pictures folder", True)

    before = {name: snapshot(root) if root.is_dir() else root.read_bytes() for name, (root, _, _) in faults.items()}
    seen = {**pages([f[0] for f in faults.values() if not f[2]], base),
            **pages([f[0] for f in faults.values() if f[2]], base, as_nobody=True)}
    report = {}
    for name, (root, words, as_nobody) in faults.items():
        line = one_error_line(precompute(root, base, as_nobody))
        assert words in line and str(root) in line, (name, line)
        if "damaged" in words:
            assert "store check --repair" in line
        if "read-only" in words or "pictures folder" in words:
            assert "DGNAM_DATA_DIR" in line and "permissions" in line
        if as_nobody:
            check = run(["store", "check", "--store", str(root)], base, as_nobody)
            code, out = check.returncode, check.stdout
        else:
            code, out = _check_in_process(root, capsys)
        assert code == 2 and any(words in ln for ln in out.splitlines() if ln.startswith("problem: ")), (name, out)
        gallery, setup = seen[(str(root), "pages/gallery.py")], seen[(str(root), "pages/setup.py")]
        assert not gallery["exception"] and not setup["exception"], (name, seen)
        assert setup["tables"] == 2, name  # Setup always opens
        if name.startswith("read-only"):  # browsing works: every stored picture is shown
            assert gallery["images"] == 3 and not gallery["error"], (name, gallery)
        else:
            assert any(words in shown(e) for e in gallery["error"]), (name, gallery)
            assert any(words in shown(e) for e in setup["error"]), (name, setup)
        # nothing was written, moved or recreated
        assert (snapshot(root) if root.is_dir() else root.read_bytes()) == before[name], name
        report[name] = line
    print(json.dumps(report, indent=1))  # the lines a user reads (pytest -s shows them)

    # --repair keeps what is readable and sets the damaged database aside, never overwriting it
    assert cli.main(["store", "check", "--repair", "--store", str(truncated)]) == 0
    assert "kept" in capsys.readouterr().out
    assert len(list(truncated.glob("results.sqlite.damaged-*"))) >= 1
    kept = ResultsStore(truncated).query()
    assert 10 <= len(kept) < 60 and all(np.asarray(__import__("PIL.Image").Image.open(r.image_path)).shape
                                        == (16, 16, 3) for r in kept)
    garbage_bytes = before["garbage database"]["results.sqlite"]
    assert cli.main(["store", "check", "--repair", "--store", str(garbage)]) == 0
    assert len(ResultsStore(garbage)) == 0
    assert [p.read_bytes() for p in garbage.glob("results.sqlite.damaged-*")] == [garbage_bytes]
    assert len(list((garbage / "images").glob("*.png"))) == 3  # the pictures themselves stay


def test_damaged_index_page_breaks_filtered_queries_and_repair_keeps_every_row(tmp_path):
    import sqlite3

    store = filled(tmp_path, 40)
    con = sqlite3.connect(store.db_path)
    page = con.execute("PRAGMA page_size").fetchone()[0]
    rootpage = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'results_unit'").fetchone()[0]
    con.close()
    with open(store.db_path, "r+b") as f:
        f.seek(page * (rootpage - 1))
        f.write(random.Random(5).randbytes(page))
    fresh = ResultsStore(tmp_path)  # the table itself is fine: opening and unfiltered listing work
    assert len(fresh.query()) == 40
    with pytest.raises(StoreError) as e:
        fresh.query(model="efficientnet_lite0", layer="classifier")
    assert "is damaged" in str(e.value) and "store check --repair" in str(e.value)
    with pytest.raises(StoreError) as e:  # what precompute asks before any work
        fresh.check_sound()
    assert "is damaged (*** in database main *** Page" in str(e.value) and "\n" not in str(e.value)
    ok, problems = store_cli.check(tmp_path)
    assert len(problems) == 1 and "is damaged" in problems[0]
    store_cli.repair(tmp_path)
    healed = ResultsStore(tmp_path)
    assert len(healed.query(model="efficientnet_lite0", layer="classifier")) == 40
    assert store_cli.check(tmp_path)[1] == []


def test_damaged_png_is_reported_once_set_aside_and_the_gallery_shows_the_others(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    store = filled(tmp_path, 3)
    bad = store.get(f"{1:032x}").image_path
    bad.write_bytes(b"\x89PNG garbage" * 20)
    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("pages/gallery.py").run()
    assert not at.exception, at.exception
    assert len(at.image) == 2  # the two good ones are drawn
    warned = " ".join(str(w.value) for w in at.warning)
    assert "1 damaged picture was set aside (efficientnet_lite0 classifier unit 1" in warned
    assert not bad.exists() and (tmp_path / "images" / "damaged" / bad.name).is_file()
    # the store that found it reports it once; a fresh one sees a missing picture (to be rendered again)
    store2 = ResultsStore(tmp_path)
    assert store2.get(f"{1:032x}") is None and store2.problems() == []
    assert [r.unit for r in store2.query()] == [2, 0]
    ok, problems = store_cli.check(tmp_path)
    assert "1 results have a missing or damaged picture" in problems[0]
    assert any("damaged pictures set aside earlier" in ln for ln in ok)


def test_store_reports_a_bad_picture_once_and_old_rows_are_checked_by_decoding(tmp_path, caplog):
    import sqlite3

    store = filled(tmp_path, 2)
    good, bad = (store.get(f"{u:032x}") for u in (0, 1))
    # a row from before checksums: verified by decoding, then given its checksum
    con = sqlite3.connect(store.db_path)
    con.execute("UPDATE results SET sha256 = NULL")
    con.commit()
    con.close()
    bad.image_path.write_bytes(bad.image_path.read_bytes()[:40])  # cut short: no longer decodes
    with caplog.at_level("WARNING"):
        assert [r.unit for r in store.query()] == [0]
        assert store.get(bad.key) is None and store.query(unit=1) == []
    assert len(store.problems()) == 1 and store.problems()[0]["reason"].startswith("does not decode")
    assert sum("damaged picture" in r.message for r in caplog.records) == 1
    con = sqlite3.connect(store.db_path)
    assert con.execute("SELECT sha256 FROM results WHERE key = ?", (good.key,)).fetchone()[0]
    con.close()


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/dgnam-pwned-by-checkpoint",))


def test_a_zip_checkpoint_with_python_objects_says_so_and_runs_nothing(tmp_path):
    import torch

    from dgnam_engine import weights as W
    from dgnam_engine.errors import WeightsCorrupt

    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(2), "x": _RunsCode()}, path)  # torch's zip format
    with pytest.raises(WeightsCorrupt) as e:
        W.load_state_dict(path)
    assert str(e.value) == (f"{path} is not a readable weights file: it stores Python objects, not only tensors, "
                            "and weights are never loaded by running code from a file")
    assert not Path("/tmp/dgnam-pwned-by-checkpoint").exists()
