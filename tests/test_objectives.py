"""Combined objectives: the text syntax, and a two-unit objective that raises both units in one picture."""
from __future__ import annotations

import pytest
import torch

from dgnam_engine import dgnam, objectives
from dgnam_engine.convention import gen_to_rgb
from dgnam_engine.errors import UserError
from dgnam_engine.runner import Settings, get_prior, visualize


def test_objective_syntax():
    parse = objectives.parse
    assert [(t.unit, t.weight) for t in parse("bee + 0.5*daisy")] == [(309, 1.0), (985, 0.5)]
    assert [(t.unit, t.weight) for t in parse("309 - 0.5*985")] == [(309, 1.0), (985, -0.5)]
    assert [(t.unit, t.weight) for t in parse("-bee + 2x daisy")] == [(309, -1.0), (985, 2.0)]
    (t,) = parse("espresso_maker")
    assert t.unit == 550
    a, b = parse("blocks.5:7@2,5 + blocks.5:9")
    assert (a.layer, a.unit, a.position, b.position) == ("blocks.5", 7, (2, 5), None)
    assert parse("black-and-tan_coonhound - bee")[1].weight == -1.0  # a hyphen inside a name is not a minus
    for bad, words in {"": "empty", "bee +": "cannot read", "beee": "no class", "blocks.5:seven": "numbers"}.items():
        with pytest.raises(UserError, match=words):
            parse(bad)


def test_objective_is_checked_against_the_model(lite0):
    with pytest.raises(UserError, match="out of range"):
        objectives.validate(lite0, objectives.parse("bee + 1000"))
    with pytest.raises(UserError, match="convolutional"):
        objectives.validate(lite0, objectives.parse("bee@1,1"))
    with pytest.raises(UserError, match="twice"):
        objectives.validate(lite0, objectives.parse("bee + 0.5*bee"))


def test_two_unit_objective_raises_both_units(lite0):
    prior = get_prior("lite0-b3")
    (r,) = visualize("efficientnet_lite0", [0], settings=Settings(objective="bee + daisy", n_iters=40),
                     target=lite0, prior=prior)
    terms = objectives.parse("bee + daisy")
    with torch.no_grad():  # both units in the starting picture G(h0) of seed 0, measured like the result
        start_img = gen_to_rgb(lite0.crop(prior.generator(dgnam.initial_codes([0], prior.lower.shape))))
        start = objectives.term_activations(lite0, lite0.rgb_to_gen(start_img), terms)[0]
    final = {row["label"]: row["activation"] for row in r.extra["terms"]}
    assert r.label == "bee + daisy" and r.extra["objective"] == "bee + daisy"
    assert final["bee"] > float(start[0]) + 5 and final["daisy"] > float(start[1]) + 5, (start, final)
    assert r.activation_final > r.activation_start
