"""Same request, same picture: a real network's unit rendered again under another thread setting and a busy CPU,
and rendered beside other units, gives the same picture on the default (fast) path and the plain one."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from dgnam_engine.runner import Settings, get_prior, visualize

BURN = "import time\nt = time.time()\nwhile time.time() - t < 60: pass\n"


@pytest.mark.parametrize("path", ["auto", "plain"])
def test_same_picture_whatever_the_load_and_the_batch(lite0, path):
    prior = get_prior("lite0-b3")
    s = Settings(n_iters=12, accel=path)
    (first,) = visualize("efficientnet_lite0", [309], settings=s, target=lite0, prior=prior)
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(2)]  # both cores busy
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # another thread setting in the process than the first run had
        (again,) = visualize("efficientnet_lite0", [309], settings=s, target=lite0, prior=prior)
        batch = visualize("efficientnet_lite0", [1, 309, 985], settings=s, target=lite0, prior=prior)
    finally:
        torch.set_num_threads(before)
        for b in burners:
            b.kill()
            b.wait()
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.image, batch[1].image)  # bee beside goldfish and daisy: the same picture
    assert first.activations == batch[1].activations
