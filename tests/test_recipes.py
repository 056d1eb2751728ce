"""The paper's five runs as recipes: what each needs, and on a machine without the paper's networks the closest
setup present with every difference named."""
from __future__ import annotations

import json
import shutil

from dgnam_engine import cli
from dgnam_engine import recipes as R


def test_offline_a_recipe_names_what_it_runs_instead():
    p = R.plan("caffenet-classes", materialise=False)
    assert (p.model, p.layer, p.units) == ("efficientnet_lite0", "classifier", [643, 624, 304, 629, 437])
    assert p.prior == "lite0-b3" and not p.exact
    note = p.note()
    assert "efficientnet_lite0 classifier instead of caffenet fc8" in note and "lite0-b3 instead of fc6" in note
    hidden = R.plan("conv5-hidden", materialise=False)
    assert hidden.layer == "blocks.5" and hidden.xy is None and "centre instead of (6, 6)" in hidden.note()


def test_a_present_prior_is_used_as_the_paper_did(fc6_file, tmp_path, monkeypatch):
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    shutil.copy(fc6_file, ckpt / "upconvGAN_fc6.pt")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    p = R.plan("googlenet-classes", materialise=False)
    assert p.prior == "fc6" and not any("prior" in d for d in p.differs)
    assert p.lr is None and any("learning rate" in d for d in p.differs)  # Lite0 instead of GoogLeNet


def test_recipes_lists_five_runs(capsys):
    assert cli.main(["recipes", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["script"][0] for r in rows] == ["1", "2", "3", "4", "5"]
    assert all(r["as_in_the_paper"] is False and r["here"].startswith("differs") for r in rows)


def test_visualize_recipe_runs_on_the_closest_setup_and_says_so(tmp_path, capsys):
    out = tmp_path / "pepper"
    assert cli.main(["visualize", "--recipe", "bell-pepper-photo", "--iters", "2", "--quiet", "--no-judge",
                     "--out", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d["recipe"] == "bell-pepper-photo" and "coffee photo" in d["note"]
    (r,) = d["results"]
    assert r["unit"] == 945 and r["label"] == "bell pepper" and "init_image" in r["extra"]
    assert (out / "bell-pepper-photo_0945.png").is_file()


def test_an_unknown_recipe_is_one_line(tmp_path, capsys):
    assert cli.main(["visualize", "--recipe", "nope", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown recipe 'nope'" in err and "caffenet-classes" in err
    assert not (tmp_path / "x").exists()


def test_visualize_recipe_reads_the_atlas_classes_instead_of_rendering_them(tmp_path, capsys, monkeypatch):
    from dgnam_engine import runner

    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DGNAM_ATLAS_DIR")  # the shipped atlas, as a user has it
    rendered = []
    real = runner.visualize
    monkeypatch.setattr(runner, "visualize", lambda *a, **k: rendered.append(a) or real(*a, **k))
    out = tmp_path / "classes"
    assert cli.main(["visualize", "--recipe", "caffenet-classes", "--quiet", "--no-judge", "--out", str(out),
                     "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rendered == []  # the five classes at the default settings ship in the atlas
    assert [r["unit"] for r in d["results"]] == [643, 624, 304, 629, 437]
    assert all((out / f"caffenet-classes_{u:04d}.png").is_file() for u in (643, 624, 304, 629, 437))
