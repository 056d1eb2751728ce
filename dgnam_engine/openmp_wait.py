"""How OpenMP threads wait at the end of each parallel region, set before torch loads its OpenMP runtime (which
reads it once). By default GNU OpenMP spins ~300,000 times before sleeping: on a machine where anything else runs
(the browser showing the live picture, another tab's run, a build), a pass of two threads then waits at every one of
its ~100 barriers for a thread the kernel descheduled, and a unit took 26-230 s instead of 7 s (AlexNet + fc6,
2 cores, 0-2 busy processes beside it). A short spin keeps the quiet-machine speed and loses nothing under load
(docs/performance.md). A value the user set is kept."""
from __future__ import annotations

import os
import sys

DEFAULTS = {"GOMP_SPINCOUNT": "1000"}


def apply() -> bool:
    """Set the defaults where unset; False when torch was imported first (then they cannot take effect)."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    return "torch" not in sys.modules
