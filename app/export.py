"""Downloads: a ZIP of results with one JSON file of their settings and activations."""
from __future__ import annotations

import io
import json
import zipfile
from typing import Sequence

from dgnam_engine.store import StoredResult


def file_name(r: StoredResult) -> str:
    return f"{r.model.replace('/', '_')}_{r.layer}_{r.unit}_{r.prior}_seed{r.seed}_{r.key[:8]}.png"


def zip_of(results: Sequence[StoredResult]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for r in results:
            z.writestr(file_name(r), r.png())
        z.writestr("results.json", json.dumps([{**r.summary(), "image": file_name(r)} for r in results], indent=2))
    return buf.getvalue()
