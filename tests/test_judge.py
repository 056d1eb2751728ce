"""The second opinion: an independent ImageNet network (EfficientNet-Lite2) judges class-unit pictures."""
from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data

from dgnam_engine import cli, judge


def test_the_judge_ranks_a_real_coffee_photo_as_a_cup_of_coffee():
    op = judge.second_opinion(skimage.data.coffee(), 967)  # espresso
    top = [t["class"] for t in op["top5"]]
    assert {967, 968} & set(top)  # espresso or cup
    assert op["rank"] <= 5 and op["intended_name"] == "espresso"
    # a class that has nothing to do with the photo ranks far down
    assert judge.second_opinion(skimage.data.coffee(), 340)["rank"] > 50  # zebra


def test_only_independent_class_units_get_a_second_opinion():
    assert judge.applies("efficientnet_lite0", "classifier", 967, "espresso", "lite0-b3") is None
    assert "class units" in judge.applies("efficientnet_lite0", "blocks.5", 7, "blocks.5 unit 7", "lite0-b3")
    assert "not independent" in judge.applies("timm/tf_efficientnet_lite2", "classifier", 967, "espresso", "pixel")


def test_a_second_opinion_is_kept_with_the_store(tmp_path):
    image = skimage.data.coffee()
    op = judge.for_result(tmp_path, "k1", image, 967)
    assert judge.stored(tmp_path, "k1") == op
    # read back, not judged again: a picture of something else under the same key keeps the stored opinion
    assert judge.for_result(tmp_path, "k1", np.zeros_like(image), 967) == op


def test_visualize_json_carries_the_second_opinion(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert cli.main(["visualize", "--model", "efficientnet_lite0", "--unit", "309", "--iters", "3", "--quiet",
                     "--out", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    op = d["second_opinion"]
    assert op["judge"] == "efficientnet_lite2" and op["intended"] == 309 and len(op["top5"]) == 5
    assert 1 <= op["rank"] <= 1000


@pytest.mark.parametrize("layer,unit", [("blocks.5", "7")])
def test_visualize_json_says_why_a_hidden_unit_has_no_second_opinion(tmp_path, capsys, layer, unit):
    assert cli.main(["visualize", "--model", "efficientnet_lite0", "--layer", layer, "--unit", unit, "--iters", "2",
                     "--quiet", "--out", str(tmp_path / "x.png"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert d["second_opinion"] is None and "class units" in d["second_opinion_note"]
