"""Where the files that ship beside the code live (demo priors, the original priors' bounds, the shipped atlas):
assets/ of a source checkout or an editable install, else the copy a plain `pip install .` puts under
<prefix>/share/dgnam-studio/assets (pyproject.toml's data-files)."""
from __future__ import annotations

import sys
from pathlib import Path


def _root() -> Path:
    here = Path(__file__).resolve().parent.parent / "assets"
    if here.is_dir():
        return here
    return Path(sys.prefix) / "share" / "dgnam-studio" / "assets"


ASSETS = _root()
