"""A plain (non-editable) install works: a wheel built from this checkout, installed into a fresh environment with
no path back to the source tree, runs MACO, the nearest-photos check and the shipped atlas from its own copy of
the assets (pyproject.toml's data-files, found by dgnam_engine/assets.py under <prefix>/share)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(python of a fresh environment holding only the wheel's dgnam_engine, its environment variables)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # built from a copy: setuptools writes build/ and egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "dgnam_engine", "assets"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("dgnam_studio-*.whl")
    env_dir = tmp / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    site = Path(subprocess.run([str(env_dir / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())
    # The heavy dependencies (torch, ...) come from the test environment's site-packages by a path line; a path
    # line does not run that folder's own .pth files, so the editable install's finder (back to ROOT) stays out.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    def ours() -> str:  # where this test environment's own python finds the engine (the editable install)
        return subprocess.run([sys.executable, "-c", "import dgnam_engine; print(dgnam_engine.__file__)"],
                              capture_output=True, text=True, cwd=tmp).stdout.strip()
    before = ours()
    # --ignore-installed: without it pip first uninstalls the dgnam-studio it finds in the running environment
    # (the developer's editable install), even when installing into another prefix
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--ignore-installed",
                           "--prefix", str(env_dir), str(wheel)], capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]
    assert ours() == before, "installing the wheel elsewhere changed this environment's own install"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DGNAM_ATLAS_DIR")}
    env["DGNAM_DATA_DIR"] = str(tmp / "data")
    py = env_dir / "bin" / "python"
    where = subprocess.run([str(py), "-c", "import dgnam_engine, dgnam_engine.assets as a; "
                            "print(dgnam_engine.__file__); print(a.ASSETS)"],
                           capture_output=True, text=True, cwd=tmp, env=env, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    code, assets = where.stdout.split()
    assert not Path(code).is_relative_to(ROOT), f"the engine came from the source tree: {code}"
    assert Path(assets).is_relative_to(env_dir), assets
    return py, env, tmp


def _cli(installed, *args, timeout=600):
    py, env, cwd = installed
    return subprocess.run([str(py), "-m", "dgnam_engine", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def test_maco_runs_from_a_plain_install(installed):
    out = installed[2] / "maco.png"
    r = _cli(installed, "visualize", "--model", "efficientnet_lite0", "--unit", "309", "--method", "maco",
             "--iters", "4", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert out.is_file() and (installed[2] / "maco_alpha.png").is_file()
    assert result["activation_final"] > result["activation_start"]


def test_neighbours_and_the_shipped_atlas_from_a_plain_install(installed):
    from skimage import data as skdata
    from PIL import Image

    image = installed[2] / "coffee.png"
    Image.fromarray(skdata.coffee()).save(image)
    r = _cli(installed, "neighbours", "--image", str(image), "-k", "3", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    found = json.loads(r.stdout.strip().splitlines()[-1])
    assert "coffee" in json.dumps(found).lower(), found  # the shipped training photos include this very photo
    r = _cli(installed, "atlas", "list", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    (shipped,) = [a for a in json.loads(r.stdout) if a["layer"] == "classifier"]
    assert Path(shipped["folder"]).is_relative_to(installed[2] / "env"), shipped
    assert shipped["units"] == shipped["present"] == 1000, shipped
