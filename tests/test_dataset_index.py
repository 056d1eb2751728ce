"""Dataset examples: `index` over a folder of real photos and `examples --json` give the ranking that each photo's
own activation (computed alone) gives; a killed `index` resumes without redoing finished photos."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dgnam_engine.photos import read_photo, square

ROOT = Path(__file__).resolve().parent.parent
SKIMAGE_DATA = Path(__import__("skimage").__file__).parent / "data"
PHOTOS = ["coffee.png", "chelsea.png", "astronaut.png", "brick.png", "coins.png", "grass.png"]
UNITS = {"classifier": [967, 281, 0], "blocks.5": [7, 40]}


def cli(args, data: Path, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT), DGNAM_DATA_DIR=str(data))
    return subprocess.run([sys.executable, "-m", "dgnam_engine", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        shutil.copy(SKIMAGE_DATA / name, d / name)
    (d / "notes.txt").write_text("not a photo")  # ignored: not an image file name
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")  # an image name, unreadable: skipped
    return d


def _alone(lite0, folder: Path, layer: str) -> dict[str, torch.Tensor]:
    """Each photo's activations computed on its own (batch of one), the oracle for the ranking."""
    info = lite0.layer(layer)
    out = {}
    for name in PHOTOS:
        x = torch.from_numpy(square(read_photo(folder / name), 224)).permute(2, 0, 1).float().unsqueeze(0) / 255
        with torch.no_grad():
            out[name] = lite0.forward_to(lite0.preprocess(lite0.rgb_to_gen(x)), info)[0].float()
    return out


def _main(argv, capsys) -> str:
    """The command line in this process (the model is loaded once for all the calls)."""
    from dgnam_engine.cli import main

    assert main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_index_and_examples_rank_photos_by_their_own_activation(lite0, folder, tmp_path, capsys):
    data = tmp_path / "data"
    out = _main(["index", "--model", "efficientnet_lite0", "--layers", "classifier,blocks.5", "--images",
                 str(folder), "--batch", "4", "--store", str(data), "--json", "--quiet"], capsys)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["images"] == len(PHOTOS) + 1 and summary["unreadable"] == 1 and summary["indexed"] == 7
    for layer, units in UNITS.items():
        alone = _alone(lite0, folder, layer)
        for unit in units:
            got = json.loads(_main(["examples", "--model", "efficientnet_lite0", "--layer", layer, "--unit",
                                    str(unit), "--top", "3", "--store", str(data), "--json"], capsys))["examples"]
            if layer == "classifier":
                score = {n: float(a[unit]) for n, a in alone.items()}
            else:
                score = {n: float(a[unit].max()) for n, a in alone.items()}
            expected = sorted(score, key=lambda n: -score[n])[:3]
            assert [Path(e["image"]).name for e in got] == expected, (layer, unit, score)
            for e in got:
                assert e["activation"] == pytest.approx(score[Path(e["image"]).name], rel=1e-3, abs=1e-3)
                if layer == "blocks.5":  # where the maximum is, and the patch around it
                    m = alone[Path(e["image"]).name][unit]
                    assert m[e["row"], e["col"]] == pytest.approx(float(m.max()), rel=1e-3, abs=1e-3)
                    top, left, bottom, right = e["box"]
                    assert 0 <= top < bottom <= 224 and 0 <= left < right <= 224
    # the espresso unit's best photo is the cup of coffee
    q = json.loads(_main(["examples", "--model", "efficientnet_lite0", "--layer", "classifier", "--unit", "967",
                          "--store", str(data), "--json"], capsys))
    assert Path(q["examples"][0]["image"]).name == "coffee.png"


def test_a_killed_index_resumes_without_redoing_finished_photos(folder, tmp_path):
    data = tmp_path / "data"
    env = dict(os.environ, PYTHONPATH=str(ROOT), DGNAM_DATA_DIR=str(data))
    args = [sys.executable, "-m", "dgnam_engine", "index", "--model", "efficientnet_lite0", "--layers",
            "classifier", "--images", str(folder), "--batch", "1", "--quiet"]
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    db = data / "examples.sqlite"
    done = 0
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if db.is_file():
                with sqlite3.connect(db) as con:
                    try:
                        done = con.execute("SELECT COUNT(*) FROM done_images").fetchone()[0]
                    except sqlite3.OperationalError:
                        done = 0
                if done >= 2:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    assert 2 <= done < 7, done
    p = cli(["index", "--model", "efficientnet_lite0", "--layers", "classifier", "--images", str(folder),
             "--batch", "2", "--json", "--quiet"], data)
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout.strip().splitlines()[-1])
    with sqlite3.connect(db) as con:
        covered = con.execute("SELECT COUNT(*) FROM done_images").fetchone()[0]
    assert s["already_done"] >= done and s["indexed"] == 7 - s["already_done"] and covered == 7, s


def test_examples_before_index_and_bad_layer_are_one_line(tmp_path):
    p = cli(["examples", "--model", "efficientnet_lite0", "--layer", "classifier", "--unit", "1"], tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "run `python -m dgnam_engine index" in p.stderr
    p = cli(["index", "--model", "efficientnet_lite0", "--layers", "nope", "--images", str(tmp_path)], tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
