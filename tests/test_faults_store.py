"""The third fault probe's store defects (issue 30): `atlas rekey` and `atlas seal` never bless a damaged atlas,
a rekey killed mid-way leaves the old atlas whole, an unsealed atlas is not served, `store check --repair` sets a
garbage examples index and damaged cached folder indexes aside, a non-finite activation is named as such, and the
atlas commands answer in one line."""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dgnam_engine import atlas as A
from dgnam_engine import cli, dataset_index as D
from dgnam_engine.errors import UserError
from dgnam_engine.request import Request, Settings
from dgnam_engine.store import ResultsStore
from test_faults import fake_result

ROOT = Path(__file__).resolve().parent.parent
NAME = "efficientnet_lite0--classifier"


def snapshot(folder: Path) -> dict:
    """Every file under `folder` (hidden ones included) and its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def refused(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = cli.main(argv)
    out = capsys.readouterr()
    err = out.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (code, out.err, out.out)
    return err[0]


def ran(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = cli.main(argv)
    out = capsys.readouterr()
    assert code == 0, (out.err, out.out)
    return out.out


@pytest.fixture
def atlases(tmp_path, monkeypatch) -> Path:
    """A copy of the shipped atlas (1000 units) as the only atlas; an empty data folder."""
    [shipped] = A.atlas_dirs(A.ATLAS_DIR)
    root = tmp_path / "atlases"
    shutil.copytree(shipped, root / NAME)
    monkeypatch.setenv("DGNAM_ATLAS_DIR", str(root))
    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "data"))
    return root


def served_labels(root: Path, tmp_path: Path) -> set[str]:
    store = ResultsStore(tmp_path / "served", atlases=A.all_atlases(root))
    return {r.label for r in store.query(model="efficientnet_lite0", layer="classifier")}


# ----- probe 6: rekey and seal refuse what does not match its seal ------------------------------------------------

def test_rekey_and_seal_refuse_an_atlas_with_a_flipped_label_and_change_nothing(atlases, tmp_path, capsys):
    con = sqlite3.connect(atlases / NAME / A.INDEX)
    con.execute("UPDATE results SET label = 'joystiCk' WHERE label = 'joystick'")  # one flipped bit
    con.commit()
    con.close()
    line = refused(["store", "check"], capsys)
    assert "1 problem" in line
    before = snapshot(atlases)
    for action, verb in (("rekey", "keyed again"), ("seal", "sealed")):
        line = refused(["atlas", action], capsys)
        assert f"atlas {action}: the atlas {atlases / NAME} does not match its seal (1 entry: unit 613: differs " \
               f"from its checksum), so it was not {verb} and nothing was changed" in line, line
        assert snapshot(atlases) == before
    capsys.readouterr()
    assert cli.main(["store", "check"]) == 2
    assert "unit 613: differs from its checksum" in capsys.readouterr().out  # still named, still set aside
    labels = served_labels(atlases, tmp_path)
    assert len(labels) == 999 and "joystiCk" not in labels and "joystick" not in labels


# ----- probe 7: a rekey builds beside and swaps in ---------------------------------------------------------------

def _stale_keys(folder: Path) -> dict[str, str]:
    """Key the atlas as an older key scheme would have (other keys, pictures named after them), sealed: what
    `atlas rekey` is for. Returns old key -> today's key."""
    con = sqlite3.connect(folder / A.INDEX)
    old_to_new = {}
    for key, image in con.execute("SELECT key, image FROM results").fetchall():
        old = hashlib.sha256(f"v1:{key}".encode()).hexdigest()[:32]
        os.replace(folder / image, folder / f"{old}.webp")
        con.execute("UPDATE results SET key = ?, image = ? WHERE key = ?", (old, f"{old}.webp", key))
        old_to_new[old] = key
    con.commit()
    con.close()
    A.write_checksums(folder)
    assert A.Atlas(folder).check() == (1000, [])
    return old_to_new


def _keys(folder: Path) -> set[str]:
    con = sqlite3.connect(f"file:{folder / A.INDEX}?mode=ro", uri=True)
    try:
        return {r[0] for r in con.execute("SELECT key FROM results")}
    finally:
        con.close()


def test_a_rekey_sigkilled_mid_way_leaves_the_old_atlas_whole_and_a_rerun_completes(atlases, tmp_path, capsys):
    folder = atlases / NAME
    old_to_new = _stale_keys(folder)
    before = snapshot(folder)
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{A.TEST_KILL_REKEY: "300"})
    p = subprocess.run([sys.executable, "-m", "dgnam_engine", "atlas", "rekey"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -9, (p.returncode, p.stderr)  # SIGKILLed after copying 300 files
    [work] = [p for p in atlases.iterdir() if p.name.startswith(".")]
    assert len(list(work.iterdir())) == 300  # it was killed mid-way, in its own folder
    assert snapshot(folder) == before and A.atlas_dirs(atlases) == [folder]
    assert A.Atlas(folder).check() == (1000, []) and _keys(folder) == set(old_to_new)
    out = ran(["atlas", "rekey"], capsys)
    assert f"removed {work}, left by a run that was killed" in out and "1000 units keyed again" in out
    assert sorted(p.name for p in atlases.iterdir()) == [NAME]
    assert _keys(folder) == set(old_to_new.values()) and A.Atlas(folder).check() == (1000, [])
    key = Request("efficientnet_lite0", [1], None, Settings()).identities()[0].key
    assert key in _keys(folder)  # keyed as a live request is keyed today


def test_a_rekey_killed_between_its_two_renames_is_put_back(atlases, capsys):
    folder = atlases / NAME
    old_to_new = _stale_keys(folder)
    before = snapshot(folder)
    dead = subprocess.Popen(["true"])
    dead.wait()
    aside = atlases / f".{NAME}.dgnam-{dead.pid}-{'0' * 32}.old"  # what the killed swap left
    folder.replace(aside)
    out = ran(["atlas", "rekey"], capsys)
    assert f"put back the atlas {folder}" in out and "1000 units keyed again" in out
    assert sorted(p.name for p in atlases.iterdir()) == [NAME]
    assert _keys(folder) == set(old_to_new.values()) and len(before) == len(snapshot(folder))


# ----- lower: a missing or unreadable seal ------------------------------------------------------------------------

def test_an_atlas_without_its_seal_is_flagged_and_not_served_until_sealed(atlases, tmp_path, capsys):
    (atlases / NAME / A.CHECKSUMS).unlink()
    assert served_labels(atlases, tmp_path) == set()  # no checks, no serving
    capsys.readouterr()
    assert cli.main(["store", "check"]) == 2
    assert f"problem: the atlas {atlases / NAME} is unsealed (it has no SHA256SUMS): its entries cannot be " \
           "verified and are not served" in capsys.readouterr().out
    # an atlas you packed yourself: seal checks each picture against its row's digest, then seals
    out = ran(["atlas", "seal"], capsys)
    assert "checksums ->" in out and A.Atlas(atlases / NAME).check() == (1000, [])


def test_an_unsealed_atlas_whose_picture_differs_from_its_row_is_not_sealed(atlases, capsys):
    (atlases / NAME / A.CHECKSUMS).unlink()
    picture = sorted((atlases / NAME).glob("*.webp"))[0]
    picture.write_bytes(picture.read_bytes()[:-4] + b"0000")
    before = snapshot(atlases)
    line = refused(["atlas", "seal"], capsys)
    assert "does not match its seal (1 entry: unit" in line and "picture missing or differs" in line
    assert snapshot(atlases) == before


def test_a_seal_that_is_a_folder_is_one_line_everywhere(atlases, tmp_path, capsys):
    (atlases / NAME / A.CHECKSUMS).unlink()
    (atlases / NAME / A.CHECKSUMS).mkdir()
    assert served_labels(atlases, tmp_path) == set()  # no IsADirectoryError
    capsys.readouterr()
    assert cli.main(["store", "check"]) == 2
    out = capsys.readouterr().out
    assert f"the atlas checksums {atlases / NAME / A.CHECKSUMS} cannot be read (Is a directory)" in out, out
    assert "cannot be read (Is a directory)" in refused(["atlas", "list"], capsys)
    assert "cannot be read (Is a directory)" in refused(["atlas", "seal"], capsys)


# ----- lower: atlas pack and atlas list -----------------------------------------------------------------------------

def test_atlas_pack_refuses_a_store_folder_that_does_not_exist(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DGNAM_ATLAS_DIR", str(tmp_path / "atlases"))
    line = refused(["atlas", "pack", "--store", str(tmp_path / "NOWHERE")], capsys)
    assert line == f"error: --store {tmp_path / 'NOWHERE'} holds no results database: give the folder that " \
                   "`python -m dgnam_engine precompute --store` filled (nothing was created)"
    assert sorted(tmp_path.iterdir()) == []


def test_atlas_list_json_gives_layers_units_and_present_units(atlases, capsys):
    sorted((atlases / NAME).glob("*.webp"))[5].unlink()
    listed = json.loads(ran(["atlas", "list", "--json"], capsys))
    assert listed == [{"atlas": NAME, "folder": str(atlases / NAME), "model": "efficientnet_lite0",
                       "layer": "classifier", "units": 1000, "present": 999}]
    assert ran(["atlas", "list"], capsys).strip() == f"{NAME}: efficientnet_lite0 classifier, 1000 units (999 present)"


# ----- probe 8: a garbage or cut-short examples index is set aside and started anew ------------------------------

def _examples_index(root: Path) -> Path:
    """A real examples index (the product's own writes), large enough to span many pages."""
    db = D.ExamplesDB(root)
    db.begin("i1", "efficientnet_lite0", "w:1", "classifier", root / "photos", "f1", 50, 9)
    tops = {u: [(float(9 - k), f"p{k}.jpg", 0, 0) for k in range(9)] for u in range(1000)}
    db.commit({"i1": tops}, [(f"p{k}.jpg", True) for k in range(50)])
    assert db.check() == []
    return db.path


@pytest.mark.parametrize("damage", ["garbage", "cut short"])
def test_repair_sets_a_damaged_examples_index_aside_and_starts_a_fresh_one(tmp_path, capsys, damage):
    data = tmp_path / "data"
    data.mkdir()
    db = _examples_index(data)
    bad = random.Random(3).randbytes(8192) if damage == "garbage" else db.read_bytes()[:db.stat().st_size // 3]
    db.write_bytes(bad)
    capsys.readouterr()
    assert cli.main(["store", "check", "--store", str(data)]) == 2
    assert f"problem: the examples index {db} is damaged" in capsys.readouterr().out
    out = ran(["store", "check", "--repair", "--store", str(data)], capsys)
    [aside] = data.glob("examples.sqlite.damaged-*")
    assert f"moved the damaged examples index to {aside}; a fresh one is started" in out, out
    assert aside.read_bytes() == bad and not db.exists()  # renamed beside, never deleted or written
    ran(["store", "check", "--store", str(data)], capsys)
    fresh = D.ExamplesDB(data)  # what a Browse card or `index` opens: a fresh, sound index, no error
    assert fresh.find("efficientnet_lite0", "w:1", "classifier") is None and fresh.check() == [] and db.is_file()
    assert aside.read_bytes() == bad


# ----- lower: cached neighbour indexes in store check ------------------------------------------------------------

def test_store_check_finds_a_damaged_cached_folder_index_and_repair_sets_it_aside(tmp_path, capsys):
    data = tmp_path / "data"
    cache = data / "neighbours"
    cache.mkdir(parents=True)
    good, bad = cache / f"{'a' * 20}.npz", cache / f"{'b' * 20}.npz"
    np.savez(good, files=np.array(["x.jpg", "y.jpg"]), features=np.zeros((2, 8), np.float16),
             pixels=np.zeros((2, 4), np.float16))  # as neighbours.folder_collection writes it
    shutil.copyfile(good, bad)
    bad.write_bytes(bad.read_bytes()[:200])  # cut short: BadZipFile
    foreign = cache / "notes.npz"
    foreign.write_bytes(b"not ours")
    capsys.readouterr()
    assert cli.main(["store", "check", "--store", str(data)]) == 2
    out = capsys.readouterr()
    assert f"problem: 1 cached photo-folder indexes in {cache} are damaged" in out.out and bad.name in out.out
    assert "--repair" in out.err
    damaged = bad.read_bytes()
    out = ran(["store", "check", "--repair", "--store", str(data)], capsys)
    [aside] = cache.glob(f"{bad.name}.damaged-*")
    assert f"moved the damaged cached photo-folder index to {aside}" in out and aside.read_bytes() == damaged
    assert good.is_file() and foreign.read_bytes() == b"not ours" and not bad.exists()
    assert f"ok: 1 cached photo-folder indexes in {cache} load" in ran(["store", "check", "--store", str(data)],
                                                                        capsys)


# ----- probe 9 (store half): a non-finite activation is named, not called a damaged database ---------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_activation_is_refused_in_one_line_and_nothing_is_stored(tmp_path, value):
    store = ResultsStore(tmp_path)
    res = fake_result(4)
    res.activation_final, res.activations = value, [0.0, value]
    with pytest.raises(ValueError) as e:
        store.put(res, f"{4:032x}", {"n_iters": 2}, "w:1")
    msg = str(e.value)
    assert isinstance(e.value, UserError)  # one line on the command line, exit 2
    assert "activation is not a finite number" in msg and "damaged" not in msg and "\n" not in msg, msg
    assert len(store) == 0 and list(store.images.glob("*.png")) == []
    store.put(fake_result(4), f"{4:032x}", {"n_iters": 2}, "w:1")  # the database is sound
    assert len(store) == 1


# ----- lower: when no picture can be stored, the job's line says so plainly --------------------------------------

def test_a_job_whose_pictures_all_fail_to_store_says_none_could_be_stored(lite0, fc6_file, tmp_path):
    from dgnam_engine.worker import FAILED, Request as JobRequest, Worker

    store = ResultsStore(tmp_path / "store")
    r = JobRequest("efficientnet_lite0", [967, 1], "classifier", Settings(prior="fc6", n_iters=2),
                   prior_file=str(fc6_file))
    for ident in r.identities():  # no picture can be put in place (as in a folder nobody may write to)
        (store.images / f"{ident.key}.png").mkdir()
    job = Worker("cpu").submit(r, store)
    assert job.wait(120) and job.state == FAILED
    assert job.error.startswith(f"none of the 2 pictures could be stored: cannot save a picture in {store.images}"), \
        job.error
    assert "the others" not in job.error and len(store) == 0
