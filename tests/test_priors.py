"""Prior files (one safetensors with a JSON card) and the original priors' metadata."""
from __future__ import annotations

import json

import pytest
import torch

from dgnam_engine import generators, priors
from dgnam_engine.errors import UserError, WeightsCorrupt
from factories import current_umask

CARD = {"name": "tiny_fc6", "title": "tiny test prior", "arch": "compact",
        "arch_kwargs": {"code_shape": [32], "width": 8, "out_size": 32}, "code_shape": [32],
        "encoder": "efficientnet_lite0", "layer": "pooled", "depth": "fc6", "note": "made by a test"}


def _generator(seed: int = 0):
    torch.manual_seed(seed)
    return generators.build(CARD["arch"], **CARD["arch_kwargs"]).eval()


@pytest.fixture()
def prior_file(tmp_path):
    lower = torch.zeros(32)
    upper = torch.linspace(1.0, 4.0, 32)
    return priors.save_prior_file(tmp_path / "tiny.safetensors", _generator(), lower, upper, CARD)


def test_round_trip_keeps_weights_bounds_and_card(prior_file):
    gen = _generator()
    pr = priors.load_prior(None, str(prior_file))
    assert pr.name == "tiny_fc6" and pr.spec.kind == "trained" and pr.path == str(prior_file)
    assert pr.spec.code_shape == (32,) and pr.spec.encoder == "efficientnet_lite0:pooled"
    assert pr.spec.depth == "fc6" and pr.spec.note == "made by a test" and pr.spec.title == "tiny test prior"
    assert torch.equal(pr.upper, torch.linspace(1.0, 4.0, 32)) and torch.equal(pr.lower, torch.zeros(32))
    h = torch.rand(2, 32)
    with torch.no_grad():
        assert torch.equal(pr.generator(h), gen(h))
    assert not any(p.requires_grad for p in pr.generator.parameters()) and not pr.generator.training
    # the code range decides the step size relative to fc6's
    assert pr.lr_scale == pytest.approx(2.5 / priors.fc6_bound_scale())


def test_saved_prior_is_readable_by_others(prior_file):
    # safetensors writes owner-only files; a trained prior is meant to be shared
    assert prior_file.stat().st_mode & 0o777 == 0o666 & ~current_umask()


def test_card_lives_in_the_file_itself(prior_file):
    assert json.loads(prior_file.with_suffix(".json").read_text()) == CARD
    prior_file.with_suffix(".json").unlink()
    assert priors.read_card(prior_file) == CARD
    assert priors.load_prior(None, str(prior_file)).name == "tiny_fc6"


def test_a_prior_file_also_loads_under_an_original_name(prior_file):
    assert priors.load_prior("fc6", str(prior_file)).spec.kind == "trained"


def test_file_without_card_or_bounds_is_rejected(tmp_path):
    from safetensors.torch import save_file

    sd = {f"generator.{k}": v.contiguous() for k, v in _generator().state_dict().items()}
    save_file(sd, str(tmp_path / "nocard.safetensors"))
    with pytest.raises(WeightsCorrupt, match="no prior card"):
        priors.load_prior(None, str(tmp_path / "nocard.safetensors"))
    save_file(sd, str(tmp_path / "nobounds.safetensors"), metadata={priors.CARD_KEY: json.dumps(CARD)})
    with pytest.raises(WeightsCorrupt, match="bounds"):
        priors.load_prior(None, str(tmp_path / "nobounds.safetensors"))
    bad = dict(CARD, code_shape=[16])
    priors.save_prior_file(tmp_path / "badshape.safetensors", _generator(), torch.zeros(32), torch.ones(32), bad)
    with pytest.raises(WeightsCorrupt):
        priors.load_prior(None, str(tmp_path / "badshape.safetensors"))


def test_unknown_prior_and_missing_file_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown prior 'fc9'"):
        priors.load_prior("fc9")
    with pytest.raises(UserError, match="not found"):
        priors.load_prior(None, str(tmp_path / "gone.safetensors"))


def test_demo_priors_are_discovered_and_stand_in_for_fc6(tmp_path, monkeypatch):
    monkeypatch.setattr(priors, "DEMO_PRIORS_DIR", tmp_path)
    assert priors.default_prior_name() == "fc6"  # nothing at all: still name the paper's prior
    priors.save_prior_file(tmp_path / "a.safetensors", _generator(), torch.zeros(32), torch.ones(32),
                           dict(CARD, name="demo_pool5", depth="pool5"))
    priors.save_prior_file(tmp_path / "b.safetensors", _generator(), torch.zeros(32), torch.ones(32),
                           dict(CARD, name="demo_fc6"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a prior")
    specs = priors.all_specs()
    assert {"conv3", "pool5", "fc6", "fc7", "demo_pool5", "demo_fc6"} <= set(specs)
    assert specs["demo_fc6"].file == str(tmp_path / "b.safetensors")
    assert priors.is_available(specs["demo_fc6"]) and not priors.is_available(specs["fc6"])
    assert priors.default_prior_name() == "demo_fc6"
    assert priors.load_prior().name == "demo_fc6"


def test_original_bounds_are_the_shipped_act_ranges():
    for name, spec in priors.ORIGINAL_PRIORS.items():
        ub = priors.read_bounds(spec.bounds_file, spec.code_shape)
        assert ub.shape == spec.code_shape and float(ub.min()) >= 0 and float(ub.max()) > 0, name
    raw = (priors.ACT_RANGE / "conv3.txt").read_text().split()
    # C order: the first numbers in the file are channel 0's first row
    ub = priors.read_bounds("conv3.txt", (384, 13, 13))
    assert ub[0, 0, :3].tolist() == [float(v) for v in raw[:3]]
    assert ub[1, 0, 0].item() == float(raw[169])
