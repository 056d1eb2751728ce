"""'Guess the neuron', the protocol and the answers: queries drawn as docs/quiz.md says (strong from the unit's top
tenth, weak from its bottom half, references the top photos without them), the same quiz for the same seed,
answers kept once in the results folder's quiz.sqlite and written out by `quiz export --csv`."""
from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from dgnam_engine import cli
from dgnam_engine import quiz as Q


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = Q.wilson(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.49, 0.943)
    assert Q.wilson(0, 10)[0] == 0 and round(Q.wilson(0, 10)[1], 4) == 0.2775
    assert all(math.isnan(v) for v in Q.wilson(0, 0))


@pytest.fixture(scope="module")
def pool():
    return Q.shipped_pool()


def test_the_shipped_pool_is_the_photos_with_thumbnails_and_their_class_activations(pool, lite0):
    import torch

    assert len(pool) == 241 and pool.picture(0).shape == (48, 48, 3)
    acts = pool.activations("classifier")
    # the logits from the shipped features are what Lite0's head computes from them
    with torch.no_grad():
        ref = lite0.model.classifier(torch.from_numpy(pool.features[:5]).float()).double().numpy()
    assert np.allclose(acts[:5], ref, atol=1e-3)
    assert pool.activations("pooled").shape == (241, 1280)


def test_questions_follow_the_protocol_and_the_seed(pool):
    acts = pool.activations("classifier")
    units = Q.answerable_units(pool, "classifier", 4)
    qs = Q.make_questions(pool, "classifier", units, ("natural", "dgnam", "none"), 12, seed="K7QD2M")
    n = len(pool)
    for q in qs:
        order = list(np.argsort(-acts[:, q.unit], kind="stable"))
        assert order.index(q.strong) < math.ceil(n / 10)  # from the top tenth
        assert order.index(q.weak) >= n - n // 2  # from the bottom half
        assert q.strong not in q.refs and q.weak not in q.refs and len(q.refs) == Q.REFERENCES
        assert q.refs == [j for j in order if j not in (q.strong, q.weak)][:Q.REFERENCES]
        assert set(q.choices) == {q.strong, q.weak}
    assert sorted(q.condition for q in qs) == sorted(["natural", "dgnam", "none"] * 4)  # balanced
    assert {q.unit for q in qs} == set(units)
    again = Q.make_questions(pool, "classifier", units, ("natural", "dgnam", "none"), 12, seed="K7QD2M")
    other = Q.make_questions(pool, "classifier", units, ("natural", "dgnam", "none"), 12, seed="ZZZZ22")
    key = [(q.unit, q.condition, q.strong, q.weak, q.strong_first) for q in qs]
    assert key == [(q.unit, q.condition, q.strong, q.weak, q.strong_first) for q in again]
    assert key != [(q.unit, q.condition, q.strong, q.weak, q.strong_first) for q in other]


def test_dgnam_references_come_from_the_shipped_atlas(tmp_path):
    from dgnam_engine.atlas import ATLAS_DIR, all_atlases
    from dgnam_engine.store import ResultsStore

    store = ResultsStore(tmp_path, all_atlases(ATLAS_DIR))  # the shipped atlas (tests start without one)
    pics, prior = Q.stored_pictures(store, Q.MODEL, "classifier", 1, "dgnam")
    assert prior == "lite0-b3" and len(pics) == 1 and pics[0].shape[2] == 3
    assert Q.stored_pictures(store, Q.MODEL, "classifier", 1, "maco") == ([], None)  # nothing rendered here


def test_answers_are_kept_once_tallied_per_room_and_exported_as_csv(pool, tmp_path, capsys):
    db = Q.AnswersDB(tmp_path)
    qs = Q.make_questions(pool, "classifier", [1, 392], ("natural", "none"), 4, seed="ROOM42")
    a, b = Q.new_session(), Q.new_session()
    for q in qs:
        assert db.record(a, "ROOM42", q, Q.MODEL, "classifier", pool, q.strong)
        assert db.record(b, "ROOM42", q, Q.MODEL, "classifier", pool, q.weak)
    assert not db.record(a, "ROOM42", qs[0], Q.MODEL, "classifier", pool, qs[0].weak)  # a second click: no change
    db.record(a, "", qs[0], Q.MODEL, "classifier", pool, qs[0].strong)  # the same person alone, not in the room
    t = db.tally("ROOM42")
    assert t["answers"] == 8 and t["people"] == 2
    assert {c: (s["correct"], s["questions"]) for c, s in t["conditions"].items()} == {"natural": (2, 4),
                                                                                    "none": (2, 4)}
    assert t["conditions"]["none"]["ci95"] == [round(v, 4) for v in Q.wilson(2, 4)]

    assert cli.main(["quiz", "export", "--csv", "--room", "ROOM42", "--store", str(tmp_path)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 8 and {r["session"] for r in rows} == {a, b}
    first = [r for r in rows if r["session"] == a and r["question"] == "1"][0]
    assert first["strong_photo"] == pool.files[qs[0].strong] and first["correct"] == "1"
    assert first["picked_photo"] == first["strong_photo"] and first["condition"] == qs[0].condition
    out = tmp_path / "answers.csv"
    assert cli.main(["quiz", "export", "--csv", "--store", str(tmp_path), "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 1 + 9


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli.main(["quiz", "export", "--csv", "--room", "no way", "--store", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the class code 'no way' is not one") and "\n" not in err
    assert cli.main(["quiz", "auto", "--layer", "blocks.5", "--store", str(tmp_path)]) == 2
    assert "knows layers classifier, pooled" in capsys.readouterr().err
    assert cli.main(["quiz", "auto", "--conditions", "natural,dream", "--store", str(tmp_path)]) == 2
    assert "unknown condition 'dream'" in capsys.readouterr().err
    assert not (tmp_path / Q.DB_NAME).exists()  # nothing written
