"""The package declares what it needs: pyproject.toml's dependencies are requirements.txt's pins, so a plain
(non-editable) `pip install .` gets a working engine and dashboard."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pyproject_declares_the_pinned_requirements():
    pins = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(declared) == sorted(pins)
