"""The paper's questions: the numbers of each experiment and the reuse of the results store."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from dgnam_engine import cli, paper
from dgnam_engine.runner import Settings
from dgnam_engine.store import ResultsStore


def test_recognition_counts_top1_and_top5_from_the_judges_ranks():
    ops = [{"rank": r} for r in (1, 3, 7, 1)]
    rec = paper._recognition(ops)
    assert (rec["top1"], rec["top5"], rec["median_rank"]) == (0.5, 0.75, 2.0)
    assert paper._recognition(None) == {"judge": None}


def test_default_units_are_evenly_spread_classes():
    assert paper.default_units(8) == [1, 141, 281, 421, 561, 701, 841, 981]


def test_pictures_are_rendered_once_and_then_read_from_the_store(tmp_path):
    said = []
    store = ResultsStore(tmp_path / "store", atlases=[])
    ctx = paper.Context([1, 2], model="efficientnet_lite0", prior="lite0-b3", progress=said.append, _store=store)
    s = Settings(prior="lite0-b3", n_iters=2)
    first = paper.pictures(ctx, "efficientnet_lite0", [1, 2], s)
    assert any("rendering 2 pictures" in t for t in said) and len(store) == 2
    said.clear()
    again = paper.pictures(ctx, "efficientnet_lite0", [2, 1], s)
    assert not any("rendering" in t for t in said)
    assert [k for k, _ in again] == [first[1][0], first[0][0]]
    assert np.array_equal(again[0][1], first[1][1])


def test_what_the_prior_draws_by_itself_differs_per_seed():
    ctx = paper.Context([1, 2], model="efficientnet_lite0", prior="lite0-b3")
    a, b = paper.prior_alone(ctx, 2)
    assert a.shape == b.shape and a.dtype == np.uint8 and not np.array_equal(a, b)


def test_rq2_says_what_it_would_need():
    out, pics = paper.rq2(paper.Context([1, 2], model="efficientnet_lite0", prior="lite0-b3"))
    assert out["ran"] is False and "Places205" in out["reason"] and pics == []


@pytest.mark.parametrize("argv,msg", [(["paper", "--units", "1"], "at least 2"),
                                      (["paper", "--facets", "0"], "at least 1")])
def test_paper_rejects_bad_counts_in_one_line(capsys, argv, msg):
    assert cli.main(argv) == 2
    assert msg in capsys.readouterr().err


# --- issue 27: intervals, "not answered here", sanity cases, stored answers -------------------------------------

def test_wilson_intervals_hold_the_rate_and_narrow_with_more_units():
    assert paper.wilson(0, 10) == [0.0, 0.278]
    assert paper.wilson(7, 8) == [0.529, 0.978]
    lo8, hi8 = paper.wilson(4, 8)
    lo50, hi50 = paper.wilson(25, 50)
    assert lo8 < lo50 < 0.5 < hi50 < hi8


def test_the_default_run_covers_fifty_class_units():
    units = paper.default_units()
    assert len(units) == 50 == len(set(units)) and paper.subset(units, 16) == sorted(paper.subset(units, 16))
    assert len(paper.subset(units, 16)) == 16 and set(paper.subset(units, 16)) <= set(units)


def test_rq2_offline_is_not_answered_and_says_what_it_needs():
    out, pics = paper.rq2(paper.Context([1, 2], model="efficientnet_lite0", prior="lite0-b3"))
    assert out["answered"] is False and pics == []
    assert "Places205/365" in out["needs"] and "Setup" in out["needs"] and "fetch" in out["command"]


def test_specificity_compares_units_with_seeds_and_says_when_the_prior_alone_collapses():
    rng = np.random.default_rng(0)
    units = [skimage.data.coffee(), skimage.data.chelsea(), skimage.data.rocket()]
    seeds = [np.clip(u.astype(int) + rng.integers(-8, 8, u.shape), 0, 255).astype(np.uint8) for u in units]
    grey = [np.full((224, 224, 3), 128, np.uint8)] * 3
    s = paper.specificity(units, seeds, grey, ("efficientnet_lite0", "pooled"))
    assert s["ratio"] > 3 and s["between_units"] > s["within_unit_seeds"] > 0
    assert s["prior_alone_spread"] == 0 and s["prior_alone_collapses"] is True
    s = paper.specificity(units, seeds, units, ("efficientnet_lite0", "pooled"))
    assert s["prior_alone_collapses"] is False


def test_save_writes_beside_and_swaps_so_a_kill_leaves_the_last_answer_whole(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path))
    red, blue = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    assert paper.save("rq9", {"n": 1}, [("red", red)])
    (old,) = paper.load("rq9")["pictures"]
    old_bytes = old[1].read_bytes()

    def killed(*a):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        paper.save("rq9", {"n": 2}, [("blue", blue)])
    monkeypatch.undo()
    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path))
    last = paper.load("rq9")
    assert last["numbers"] == {"n": 1} and last["pictures"][0][1].read_bytes() == old_bytes
    assert paper.save("rq9", {"n": 3}, [("blue", blue)])
    last = paper.load("rq9")
    assert last["numbers"] == {"n": 3} and not old[1].exists()  # the replaced answer's picture is gone after
    # the killed save's leftovers (its picture, its unswapped JSON) go too: only the new answer is there
    assert sorted(p.name for p in (tmp_path / "paper").iterdir()) == sorted(["rq9.json", last["pictures"][0][1].name])


@pytest.fixture
def quick_data(tmp_path, monkeypatch):
    """A data folder with a small offline corpus (RQ5's top photos are found in seconds)."""
    from PIL import Image

    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path / "data"))
    corpus = tmp_path / "data" / "corpus"
    corpus.mkdir(parents=True)
    for name in ("coffee", "chelsea", "astronaut", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()).save(corpus / f"skimage__{name}.jpg")
    return tmp_path / "data"


def test_paper_json_answers_with_intervals_not_answered_states_and_sanity_cases(quick_data, capsys):
    import json
    import time

    assert cli.main(["paper", "--units", "2", "--steps", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rq1 = d["rq1"]
    for m in ("dgnam", "pixel", "maco"):
        r = rq1["methods"][m]
        assert r["n"] == 2 and r["top1_interval"][0] <= r["top1"] <= r["top1_interval"][1]
    assert rq1["seeds"] == [0] and rq1["judge_is_sibling"] is True and "sibling" in rq1["judge_note"]
    assert d["rq2"]["answered"] is False and d["rq2"]["needs"]
    rq3 = d["rq3"]
    assert rq3["answered"] is True and rq3["weak"] is True and "one family" in rq3["note"]
    assert rq3["targets"]["efficientnet_lite0"]["judge"] == "efficientnet_lite2"
    assert rq3["targets"]["efficientnet_lite2"]["judge"] == "efficientnet_lite0"
    sanity = d["rq4"]["sanity"]
    assert sanity["training photo (coffee)"]["verdict"] == "copy" and sanity["coloured noise"]["verdict"] == "new"
    assert (sanity["training photo (coffee)"]["realism_distance"] < sanity["blurred photo"]["realism_distance"]
            < sanity["coloured noise"]["realism_distance"])
    spec = d["rq4"]["specificity"]
    assert spec["within_unit_seeds"] > 0 and "prior_alone_spread" in spec and "prior_alone_collapses" in spec
    rq5 = d["rq5"]  # four photos, one of espresso, none of bee: no facets from them
    assert rq5["answered"] is False and rq5["units"]["967"]["of_class"] < rq5["photos_needed"]
    assert "index a folder with photos of this class" in rq5["units"]["967"]["needs"]
    # a rerun reads the stored answers: the same numbers, nothing rendered, in seconds
    t0 = time.perf_counter()
    assert cli.main(["paper", "--units", "2", "--steps", "2", "--json"]) == 0
    again = capsys.readouterr()
    assert time.perf_counter() - t0 < 60 and "rendering" not in again.err
    e = json.loads(again.out.strip().splitlines()[-1])
    assert all(e[k]["reused"] for k in paper.EXPERIMENTS) and e["rq1"]["methods"] == rq1["methods"]
    assert paper.estimate("rq1", paper.Context(paper.default_units(2), steps=2))["stored"] is True


def test_ctrl_c_in_paper_says_which_answers_were_written(quick_data, capsys, monkeypatch):
    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setitem(paper.EXPERIMENTS, "rq3", interrupted)
    assert cli.main(["paper", "--units", "2", "--steps", "2", "--json"]) == 130
    err = capsys.readouterr().err
    assert "rq1, rq2 were written to" in err and "nothing was written" not in err
    assert paper.load("rq1") is not None and paper.load("rq3") is None
