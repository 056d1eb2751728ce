"""How OpenMP threads wait at the end of each parallel region, set before torch loads its OpenMP runtime (GNU
OpenMP reads it once). Measured on 2 cores with two-thread passes (docs/performance.md):
- by default a waiting thread spins ~300,000 times (about 3 ms) before sleeping. Beside another process that
  computes with its own threads (a test suite, a second server), a pass then waits at each of its ~100 barriers for
  a thread the kernel descheduled: 56-72 s a unit instead of 8 s. A short spin (1000) keeps that at 8 s;
- GNU OpenMP shortens the spin further (to 100) whenever it manages more threads than there are cores, e.g. when
  the dashboard's page thread has run torch once and a worker thread runs the passes: 6.1 s instead of 4.0 s a
  Lite0 unit. OMP_WAIT_POLICY=ACTIVE raises that shortened spin to 1000 too, so it is the same everywhere.
Values the user set are kept."""
from __future__ import annotations

import os
import sys

DEFAULTS = {"GOMP_SPINCOUNT": "1000", "OMP_WAIT_POLICY": "ACTIVE"}


def apply() -> bool:
    """Set the defaults where unset; False when torch was imported first (then they cannot take effect)."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    return "torch" not in sys.modules
