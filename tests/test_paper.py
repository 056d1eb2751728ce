"""The paper's questions: the numbers of each experiment and the reuse of the results store."""
from __future__ import annotations

import numpy as np
import pytest

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
