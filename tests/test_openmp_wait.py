"""How OpenMP threads wait is set before torch loads (dgnam_engine/openmp_wait.py), and a user's own setting wins."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT

PROBE = ("import os, json, dgnam_engine, torch; "
         "print(json.dumps([os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY')]))")


def _seen(**env) -> list:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**clean, **env, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-1000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_engine_sets_a_short_spin_before_torch_loads_and_keeps_the_users_values():
    assert _seen() == ["1000", "ACTIVE"]
    assert _seen(GOMP_SPINCOUNT="300000", OMP_WAIT_POLICY="PASSIVE") == ["300000", "PASSIVE"]
