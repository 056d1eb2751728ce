"""Same request, same picture: a real network's unit rendered again under another thread setting and a busy CPU,
and rendered beside other units (in turn, or side by side on the cores), gives the same picture on the default
(fast) path and the plain one. Every pass uses the machine's fixed thread count, recorded with the result."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from dgnam_engine import accel
from dgnam_engine.errors import UserError
from dgnam_engine.runner import Settings, get_prior, visualize
from dgnam_engine.store import ResultsStore

BURN = "import time\nt = time.time()\nwhile time.time() - t < 60: pass\n"


def _alone_then_loaded_and_in_a_batch(lite0, path: str):
    prior = get_prior("lite0-b3")
    s = Settings(n_iters=12, accel=path)
    (first,) = visualize("efficientnet_lite0", [309], settings=s, target=lite0, prior=prior)
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(2)]  # both cores busy
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if before > 1 else 2)  # another thread setting in the process than the first run had
        (again,) = visualize("efficientnet_lite0", [309], settings=s, target=lite0, prior=prior)
        batch = visualize("efficientnet_lite0", [1, 309, 985], settings=s, target=lite0, prior=prior)
    finally:
        torch.set_num_threads(before)
        for b in burners:
            b.kill()
            b.wait()
    return first, again, batch


@pytest.mark.parametrize("path", ["auto", "plain"])
def test_same_picture_whatever_the_load_and_the_batch(lite0, path):
    first, again, batch = _alone_then_loaded_and_in_a_batch(lite0, path)
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.image, batch[1].image)  # bee beside goldfish and daisy: the same picture
    assert first.activations == batch[1].activations
    # a lone unit uses the whole machine (up to the cap), not one core
    assert first.cpu_threads == min(accel.usable_cores(), accel.MAX_PASS_THREADS) == batch[1].cpu_threads


def test_same_picture_when_the_samples_of_a_batch_run_side_by_side(lite0, monkeypatch):
    """One thread a pass leaves a core for a second pass: the batch's samples then run side by side, and each
    still matches its lone render."""
    monkeypatch.setenv(accel.THREADS_ENV, "1")
    if accel.cpu_lanes(accel.cpu_pass_threads()) < 2:
        pytest.skip("needs two cores")
    first, again, batch = _alone_then_loaded_and_in_a_batch(lite0, "auto")
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.image, batch[1].image)
    assert first.activations == batch[1].activations
    assert first.cpu_threads == 1


def test_the_thread_count_is_stored_with_the_result_and_a_bad_setting_is_refused(lite0, tmp_path, monkeypatch):
    prior = get_prior("lite0-b3")
    (r,) = visualize("efficientnet_lite0", [309], settings=Settings(n_iters=3), target=lite0, prior=prior)
    stored = ResultsStore(tmp_path).put(r)
    assert stored.settings["cpu_threads"] == accel.cpu_pass_threads() >= 1
    monkeypatch.setenv(accel.THREADS_ENV, "all")
    with pytest.raises(UserError, match="DGNAM_CPU_THREADS='all': give a whole number of threads"):
        visualize("efficientnet_lite0", [309], settings=Settings(n_iters=3), target=lite0, prior=prior)
