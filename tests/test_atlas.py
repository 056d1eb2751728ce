"""The shipped atlas: results made by `precompute`, packed into a folder of small pictures with a read-only index,
are served by the results store to a live request with the same settings (nothing rendered, nothing copied), and
a damaged shipped picture is not served and never moved."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dgnam_engine import atlas as A
from dgnam_engine.request import Request, Settings
from dgnam_engine.store import ResultsStore

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ["--iters", "2"]


def cli(args, env_extra: dict) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env_extra)
    return subprocess.run([sys.executable, "-m", "dgnam_engine", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    base = tmp_path_factory.mktemp("atlas")
    env = {"DGNAM_ATLAS_DIR": str(base / "atlases")}
    p = cli(["precompute", "--model", "efficientnet_lite0", "--units", "0-2", *SETTINGS, "--store",
             str(base / "build"), "--json", "--quiet"], env)
    assert p.returncode == 0, p.stderr
    p = cli(["atlas", "pack", "--store", str(base / "build"), "--model", "efficientnet_lite0", *SETTINGS, "--json"],
            env)
    assert p.returncode == 0, p.stderr
    return base, env, json.loads(p.stdout)


def test_pack_writes_small_pictures_and_an_index(packed):
    base, _, info = packed
    folder = Path(info["atlas"])
    assert folder == base / "atlases" / "efficientnet_lite0--classifier" and info["units"] == 3
    pictures = sorted(folder.glob("*.webp"))
    assert len(pictures) == 3 and (folder / A.INDEX).is_file()
    with Image.open(pictures[0]) as im:
        assert im.size == (A.THUMB, A.THUMB) and np.asarray(im.convert("RGB")).std() > 2
    assert A.Atlas(folder).meta()["units"] == 3
    assert A.Atlas(folder).check() == (3, [])  # SHA256SUMS: the index, each row and each picture


def test_a_live_request_with_the_same_settings_finds_the_atlas(packed, tmp_path):
    base, env, info = packed
    store = ResultsStore(tmp_path / "fresh", atlases=A.all_atlases(base / "atlases"))
    key = Request("efficientnet_lite0", [1], None, Settings(n_iters=2)).identities()[0].key
    r = store.get(key)
    assert r is not None and r.shipped and r.unit == 1 and r.label == "goldfish"
    assert len(r.activations) == 2 and r.image_path.parent == Path(info["atlas"])
    assert [x.unit for x in sorted(store.query(model="efficientnet_lite0", layer="classifier"), key=lambda x: x.unit)
            ] == [0, 1, 2]
    assert store.query(shipped=False) == [] and len(store) == 0  # nothing copied into the user's store
    assert store.get(Request("efficientnet_lite0", [1], None, Settings(n_iters=3)).identities()[0].key) is None  # other settings
    # precompute with the same settings finds them: nothing to render
    p = cli(["precompute", "--model", "efficientnet_lite0", "--units", "0-2", *SETTINGS, "--store",
             str(tmp_path / "fresh"), "--json", "--quiet"], env)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout.strip().splitlines()[-1])
    assert s["rendered"] == 0 and s["already_stored"] == 3


def test_a_damaged_shipped_picture_is_not_served_and_not_moved(packed, tmp_path):
    base, _, info = packed
    copy = tmp_path / "atlases" / "efficientnet_lite0--classifier"
    copy.parent.mkdir()
    import shutil

    shutil.copytree(info["atlas"], copy)
    store = ResultsStore(tmp_path / "fresh", atlases=A.all_atlases(tmp_path / "atlases"))
    key = Request("efficientnet_lite0", [2], None, Settings(n_iters=2)).identities()[0].key
    (copy / f"{key}.webp").write_bytes(b"garbage")
    assert store.get(key) is None
    assert (copy / f"{key}.webp").read_bytes() == b"garbage"  # part of the install: reported, never moved
    assert [p["unit"] for p in store.problems()] == [2]
    assert sorted(r.unit for r in store.query(model="efficientnet_lite0")) == [0, 1]


def test_the_shipped_atlas_answers_todays_default_request(tmp_path, monkeypatch):
    """Keyed as the store keys a request today (run `atlas rekey` after store.KEY_VERSION changes)."""
    monkeypatch.delenv("DGNAM_ATLAS_DIR")
    [shipped] = A.all_atlases()
    made_on = shipped.meta()["settings"]["accel"]
    req = Request("efficientnet_lite0", [0, 1, 309, 967], None, Settings(), device="cpu")
    idents = req.identities()
    if idents[0].settings["accel"] != made_on:
        pytest.skip(f"this CPU runs {idents[0].settings['accel']}, the atlas was made with {made_on}")
    store = ResultsStore(tmp_path / "fresh", atlases=[shipped])
    assert all(store.get(i.key) is not None for i in idents)
