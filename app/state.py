"""Process-wide resources shared by every browser session, and the settings that come from the environment.
The store opens without torch (Browse's first screen needs only it); the device and the worker load the engine."""
from __future__ import annotations

import os
from typing import Optional

import streamlit as st

from dgnam_engine import numbers
from dgnam_engine.atlas import all_atlases
from dgnam_engine.store import ResultsStore, StoreError, default_root

ENV_DEVICE = "DGNAM_DEVICE"  # cpu, cuda or auto (default): where the dashboard runs DGN-AM
ENV_STEPS = "DGNAM_UI_STEPS"  # default number of steps in the widgets (tests and quick demos use a few)


@st.cache_resource(show_spinner=False)
def _store(root: str) -> ResultsStore:
    return ResultsStore(root, all_atlases())


def store() -> ResultsStore:
    """The results store; an unusable data folder raises StoreError, whose one line the page shows."""
    return _store(str(default_root()))


def store_problem() -> Optional[str]:
    """What is wrong with the results folder (the same line the other pages show), or None."""
    try:
        store()
    except StoreError as exc:
        return str(exc)
    return None


def device() -> str:
    from dgnam_engine.targets import resolve_device

    return str(resolve_device(os.environ.get(ENV_DEVICE, "auto")))


def device_name() -> str:
    """The GPU's name (or "CPU") of the device the dashboard renders on."""
    dev = device()
    if dev.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(torch.device(dev))
    return "CPU"


def worker():
    """The device's worker (dgnam_engine.worker.Worker)."""
    from dgnam_engine.worker import get_worker

    return get_worker(device())


def warm(requests) -> None:
    """Have the worker prepare these kinds of run while the visitor looks at the page (Worker.warm: once each per
    server), so the first Render starts at once. DGNAM_NO_WARMUP=1 turns it off (the test suite's in-process pages,
    whose worker outlives each test's settings)."""
    if os.environ.get("DGNAM_NO_WARMUP") == "1":
        return
    w = worker()
    for r in requests:
        w.warm(r)


def default_steps() -> Optional[int]:
    """Steps preset in the widgets: $DGNAM_UI_STEPS, else None (the model's own default, 200)."""
    v = os.environ.get(ENV_STEPS, "").strip()
    return int(v) if numbers.is_whole(v) and int(v) > 0 else None
