"""`train-prior`: a tiny prior trained for a few steps on real photos, interrupted, resumed, loaded and used."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RUN = "import sys; from dgnam_engine.cli import main; sys.exit(main(sys.argv[1:]))"
TINY = ["--size", "32", "--batch-size", "4", "--crops-per-image", "3", "--width", "8", "--fc-width", "32",
        "--comparator-layer", "blocks.1", "--threads", "2", "--heldout", "0.3", "--log-every", "1"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Real photographs that ship with scikit-image, written as a small folder of JPEGs."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera", "grass", "brick"):
        img = getattr(data, name)()
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        Image.fromarray(img[..., :3]).resize((96, 96)).save(folder / f"{name}.jpg", quality=90)
    return folder


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", RUN, "train-prior", *args]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_train_interrupt_resume_and_use(photos, tmp_path, lite0):
    out, work = tmp_path / "tiny.safetensors", tmp_path / "work"
    args = _cmd("--layer", "pooled", "--images", str(photos), "--out", str(out), "--work-dir", str(work),
                "--steps", "30", "--ckpt-every", "1000", "--depth", "fc6", *TINY)
    proc = subprocess.Popen(args, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("step 3/30"):
            proc.send_signal(signal.SIGINT)  # Ctrl-C mid-run
            break
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    stopped = int(err.split("interrupted at step ")[1].split(";")[0])
    assert 3 <= stopped < 30
    assert (work / "checkpoint.pt").is_file() and not out.exists()

    res = subprocess.run(args, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert f"resuming from {work / 'checkpoint.pt'} at step {stopped}/30" in lines
    steps = [int(ln.split()[1].split("/")[0]) for ln in lines if ln.startswith("step ")]
    assert steps[0] == stopped + 1 and steps[-1] == 30  # continues, does not start again
    assert any("img/s" in ln and "left" in ln for ln in lines)  # speed and time left are shown
    summary = json.loads(lines[-1])
    assert summary["steps"] == 30 and set(summary["final_losses"]) == {"image", "feature", "adv", "d"}

    from dgnam_engine import priors as P
    from dgnam_engine.runner import Settings, visualize

    card = json.loads(out.with_suffix(".json").read_text())
    assert card == P.read_card(out)
    assert (card["encoder"], card["layer"], card["code_shape"], card["depth"]) == \
        ("efficientnet_lite0", "pooled", [1280], "fc6")
    assert card["training"]["steps"] == 30 and card["training"]["photos"] + card["heldout"]["photos"] == 7
    assert card["heldout"]["mse"] > 0 and card["heldout"]["mean_image_mse"] > 0
    prior = P.load_prior(prior_file=str(out))
    assert prior.spec.kind == "trained" and tuple(prior.lower.shape) == (1280,)
    assert bool((prior.lower <= prior.upper).all()) and bool((prior.lower >= 0).all())  # pooled is post-ReLU6
    # The engine uses it like any prior: DGN-AM on a Lite0 class unit.
    (r,) = visualize("efficientnet_lite0", [1], settings=Settings(n_iters=8), target=lite0, prior=prior)
    assert r.prior == "tiny" and r.prior_kind == "trained" and r.image.shape == (224, 224, 3)
    assert r.activation_final > r.activation_start


def test_spatial_layer_in_process(photos, tmp_path):
    """A spatial code (blocks.5, 192x7x7) through the function API; bounds keep negative BN outputs."""
    from dgnam_engine.priors import load_prior
    from dgnam_engine.training.train_prior import TrainConfig, train

    cfg = TrainConfig(layer="blocks.5", images=str(photos), out=str(tmp_path / "b5.safetensors"), steps=3,
                      size=32, batch_size=2, crops_per_image=1, width=8, comparator_layer="blocks.1",
                      heldout_fraction=0.0, work_dir=str(tmp_path / "w"), log_every=1)
    logs = []
    card = train(cfg, logs.append)
    assert card["code_shape"] == [192, 7, 7] and card["training"]["steps"] == 3 and card["heldout"] == {}
    assert any(ln.startswith("step 3/3") for ln in logs)
    prior = load_prior(prior_file=cfg.out)
    assert bool((prior.lower < 0).any())  # block outputs (BatchNorm, no activation) go negative
    x = prior.generator(prior.upper.unsqueeze(0))
    assert x.shape == (1, 3, 32, 32) and float(x.abs().max()) <= 255.0

    # --bound-std on a finished run: no more training, the same G, a box a third as wide around the same means.
    logs.clear()
    card = train(replace(cfg, bound_std=1.0), logs.append)
    assert not any(ln.startswith("step ") for ln in logs) and card["bounds"].startswith("per unit mean -/+ 1 std")
    tight = load_prior(prior_file=cfg.out)
    signed = prior.lower < 0  # never clamped at 0, so the box is symmetric about the mean
    torch.testing.assert_close((tight.upper - tight.lower)[signed], (prior.upper - prior.lower)[signed] / 3)
    torch.testing.assert_close((tight.upper + tight.lower)[signed], (prior.upper + prior.lower)[signed])
    assert torch.equal(tight.generator(prior.upper.unsqueeze(0)), x)


def test_user_errors_write_nothing(photos, tmp_path, capsys):
    from dgnam_engine.cli import main

    out = tmp_path / "p.safetensors"
    assert main(["train-prior", "--layer", "pooled", "--images", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: image folder not found") and len(err.strip().splitlines()) == 1
    assert main(["train-prior", "--layer", "fc99", "--images", str(photos), "--out", str(out), "--work-dir",
                 str(tmp_path / "w")]) == 2
    assert "has no layer 'fc99'" in capsys.readouterr().err and not out.exists()
    assert main(["train-prior", "--layer", "pooled", "--images", str(photos), "--out", str(out), "--work-dir",
                 str(tmp_path / "w2"), "--bound-std", "0"]) == 2
    assert capsys.readouterr().err == "error: --bound-std must be positive\n"
    assert not out.exists() and not (tmp_path / "w2").exists()


def test_cli_registers_train_prior():
    """`python -m dgnam_engine train-prior` works: cli.COMMANDS lists it."""
    res = subprocess.run([sys.executable, "-m", "dgnam_engine", "train-prior", "--help"], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--layer" in res.stdout and "--images" in res.stdout


def test_damaged_checkpoint_or_cache_is_named_and_restart_recovers(photos, tmp_path):
    from dgnam_engine.errors import UserError
    from dgnam_engine.training.train_prior import CHECKPOINT, TrainConfig, train

    work = tmp_path / "train" / "p"
    cfg = TrainConfig(layer="pooled", images=str(photos), out=str(tmp_path / "p.safetensors"), steps=1, size=32,
                      batch_size=2, crops_per_image=1, width=8, fc_width=32, comparator_layer="blocks.1",
                      heldout_fraction=0.0, work_dir=str(work), log_every=1, ckpt_every=1)
    train(cfg, lambda _: None)
    ckpt = work / CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:300])  # cut short
    with pytest.raises(UserError) as e:
        train(replace(cfg, steps=2), lambda _: None)
    assert str(e.value).startswith(f"the training checkpoint {ckpt} is damaged or cut short")
    assert "--restart" in str(e.value) and "\n" not in str(e.value)
    cache = tmp_path / "train" / "cache"
    files = sorted(cache.glob("*.pt"))
    assert files
    files[0].write_bytes(files[0].read_bytes()[:200])
    with pytest.raises(UserError) as e:
        train(replace(cfg, steps=2), lambda _: None)
    assert str(e.value).startswith(f"a cached crops/codes file in {cache} is damaged") and "--restart" in str(e.value)
    logs = []
    card = train(replace(cfg, steps=2, restart=True), logs.append)
    assert card["training"]["steps"] == 2 and any("cleared 2 cached crops/codes files" in ln for ln in logs)
