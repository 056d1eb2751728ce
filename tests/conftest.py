"""Shared fixtures. Every test runs with its own empty caches, offline, so nothing depends on (or pollutes)
the user's TORCH_HOME / Hugging Face cache / results store."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import shutil
import tempfile

# Set before anything imports huggingface_hub or torch.hub, which read these once at import time.
_BASE = Path(tempfile.mkdtemp(prefix="dgnam-tests-"))
_ENV = {"TORCH_HOME": str(_BASE / "torch"), "HF_HOME": str(_BASE / "hf"), "HF_HUB_OFFLINE": "1",
        "DGNAM_DATA_DIR": str(_BASE / "data"), "XDG_CACHE_HOME": str(_BASE / "cache"),
        # no shipped atlas unless a test asks for one: stores start empty (tests/test_atlas*.py point at atlases)
        "DGNAM_ATLAS_DIR": str(_BASE / "no-atlas"),
        # no background warm-up runs from in-process pages: the shared worker outlives each test's settings
        "DGNAM_NO_WARMUP": "1"}
_OLD_ENV = {k: os.environ.get(k) for k in _ENV}
os.environ.update(_ENV)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import dgnam_engine  # noqa: E402,F401  (before torch: sets how OpenMP threads wait, dgnam_engine/openmp_wait.py)


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches():
    yield _BASE
    for k, v in _OLD_ENV.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    shutil.rmtree(_BASE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _same_numbers_every_run():
    """Seed torch per test so a failure seen once (in CI, say) can be reproduced here."""
    import torch

    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fc6_file(tmp_path_factory) -> Path:
    """A random, responsive fc6 generator saved in the Hugging Face key format."""
    from factories import save_fc6_hf_format

    return save_fc6_hf_format(tmp_path_factory.mktemp("weights") / "upconvGAN_fc6.pt")


@pytest.fixture(scope="session")
def lite0():
    """The real EfficientNet-Lite0 (ImageNet weights from the pip package), on the CPU."""
    from dgnam_engine.runner import get_target

    return get_target("efficientnet_lite0", "cpu")


@pytest.fixture(scope="session")
def fc6_prior(fc6_file):
    from dgnam_engine.runner import get_prior

    return get_prior("fc6", str(fc6_file), "cpu")


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's script runner (AppTest) installs the script it ran as sys.modules["__main__"] and leaves it there;
    a later test that spawns processes (multiprocessing re-imports __main__ in the child) would run that script."""
    main = sys.modules.get("__main__")
    yield
    if main is not None:
        sys.modules["__main__"] = main


def pytest_collection_modifyitems(items):
    """Tests that drive a real browser (tests/test_browser*.py) carry the `browser` mark, so the fast suite
    (`-m "not browser"`) and the browser suite (`-m browser`) can run apart; a plain run runs both."""
    for item in items:
        if item.path.name.startswith("test_browser"):
            item.add_marker(pytest.mark.browser)
