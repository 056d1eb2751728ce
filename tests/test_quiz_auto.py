"""The quiz by machine (quiz_auto): EfficientNet-Lite2's features stand in for a person. Planted cases: a unit whose
references are its own top photos scores near the ceiling; references that are another, unrelated unit's top photos
score no better than chance; DGN-AM pictures from the shipped atlas score between the two. `quiz auto --json` gives
the figures per condition with intervals, for the class layer and the hidden pooled layer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ROOT
from dgnam_engine import cli
from dgnam_engine import quiz as Q
from dgnam_engine import quiz_auto as A


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A results folder holding the pool's perceptual features once computed (about 40 s on two busy cores)."""
    r = tmp_path_factory.mktemp("quiz")
    A.pool_features(Q.shipped_pool(), r)
    return r


def unrelated(pool, layer, u, candidates):
    """The candidate whose top tenth shares no photo with u's and whose activations correlate least with u's."""
    acts = pool.activations(layer)
    k = Q.top_count(len(pool))
    top_u = set(np.argsort(-acts[:, u])[:k])
    ok = [v for v in candidates if v != u and not top_u & set(np.argsort(-acts[:, v])[:k])]
    return min(ok, key=lambda v: abs(np.corrcoef(acts[:, u], acts[:, v])[0, 1]))


def test_own_top_photos_score_near_the_ceiling_and_another_units_near_or_below_chance(root):
    pool = Q.shipped_pool()
    units = Q.answerable_units(pool, "classifier", 4)
    own = A.run(pool, "classifier", units, ("natural", "none"), cache_root=root)
    nat = own["conditions"]["natural"]
    assert nat["questions"] == 40 and nat["ci95"][0] >= 0.8, nat
    candidates = Q.answerable_units(pool, "classifier", 30)
    other = {u: unrelated(pool, "classifier", u, candidates) for u in units}
    planted = A.run(pool, "classifier", units, ("natural",), natural_of=other, cache_root=root)["conditions"]
    # another unit's photos say nothing right about this one: the machine does no better than a coin (it tends to
    # do worse: they point away from this unit's photos, see docs/quiz.md)
    assert planted["natural"]["score"] <= 0.55 and planted["natural"]["ci95"][0] < 0.5, planted
    assert own["conditions"]["none"]["ci95"][0] <= 0.5 <= own["conditions"]["none"]["ci95"][1]


def test_dgnam_pictures_from_the_atlas_score_below_the_natural_ceiling(root):
    from dgnam_engine.atlas import ATLAS_DIR, all_atlases
    from dgnam_engine.store import ResultsStore

    pool = Q.shipped_pool()
    units = Q.answerable_units(pool, "classifier", 4)
    store = ResultsStore(root, all_atlases(ATLAS_DIR))
    res = A.run(pool, "classifier", units, ("natural", "dgnam", "maco"), A.stored_refs(store, Q.MODEL, "classifier"),
                cache_root=root)
    c = res["conditions"]
    assert c["dgnam"]["questions"] == 40 and 0.5 < c["dgnam"]["score"] <= c["natural"]["score"], c
    assert c["maco"]["questions"] == 0 and c["maco"]["units_missing"] == 4  # none rendered: said, not guessed


def test_quiz_auto_json_gives_each_condition_with_intervals_on_two_layers(root, capsys, monkeypatch):
    from dgnam_engine.atlas import ATLAS_DIR

    monkeypatch.setenv("DGNAM_ATLAS_DIR", str(ATLAS_DIR))
    assert cli.main(["quiz", "auto", "--json", "--units", "1,392", "--questions", "6", "--store", str(root)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["layer"] == "classifier" and res["perceptual_model"] == "efficientnet_lite2:pooled"
    assert [u["unit"] for u in res["per_unit"]] == [1, 392]
    for name in ("natural", "dgnam", "none"):
        s = res["conditions"][name]
        assert s["questions"] == 12 and s["ci95"][0] <= s["score"] <= s["ci95"][1], (name, s)
    assert res["conditions"]["pixel"]["questions"] == 0
    assert A.last(root)["conditions"] == res["conditions"]  # kept for the paper page
    assert A.rq1(root)["machine"]["conditions"]["natural"] == res["conditions"]["natural"]

    assert cli.main(["quiz", "auto", "--json", "--layer", "pooled", "--count", "3", "--questions", "6",
                     "--conditions", "natural,none", "--store", str(root)]) == 0
    hidden = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert hidden["layer"] == "pooled" and hidden["units"] == 3
    assert hidden["conditions"]["natural"]["score"] > 0.6, hidden["conditions"]


def test_the_paper_page_shows_the_machine_score_with_intervals_and_peoples_tally_under_rq1(tmp_path, monkeypatch):
    """RQ1 on the paper page carries Guess the neuron: the last `quiz auto` scores with their intervals, and the
    tally of people's answers, both read from the results folder."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("DGNAM_DATA_DIR", str(tmp_path))
    A.remember(tmp_path, {"layer": "classifier", "units": 50, "perceptual_model": "efficientnet_lite2:pooled",
                           "note": "a sibling of the target", "conditions": {
                               "natural": Q.score(463, 500), "dgnam": Q.score(380, 500), "none": Q.score(255, 500)}})
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/paper.py").run()
    assert not at.exception, at.exception
    words = " ".join(str(c.value) for c in at.caption)
    assert "Guess the neuron, by machine** (50 units" in words, words
    assert "natural: 93% (90%–95%, 500 questions)" in words and "dgnam: 76% (72%–80%" in words, words
    assert "by people" not in words  # nobody answered yet
