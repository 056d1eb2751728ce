"""Downloads: a ZIP of results with one JSON file of their settings and activations."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Sequence

from dgnam_engine.store import StoredResult

from .paths import shown


def variant_tag(r: StoredResult) -> str:
    """'_photo-coffee', '_at2-5', '_combo' for variants (empty for a unit's own picture), so a file name says it."""
    s = r.settings
    tags = []
    if s.get("init_image"):
        tags.append("photo-" + Path(str(s["init_image"])).stem[:16])
    if s.get("position"):
        tags.append("at{}-{}".format(*s["position"]))
    if s.get("objective"):
        tags.append("combo")
    return "".join("_" + t for t in tags)


def file_name(r: StoredResult) -> str:
    small = "_atlas128" if r.shipped else ""
    return (f"{r.model.replace('/', '_')}_{r.layer}_{r.unit}{variant_tag(r)}_{r.prior}_seed{r.seed}{small}"
            f"_{r.key[:8]}.png")


def _start_photo(r: StoredResult) -> Path | None:
    p = r.settings.get("init_image")
    return Path(str(p)) if p and Path(str(p)).is_file() else None


def _no_server_paths(value):
    """A result's JSON with every absolute path named from a known folder (app/paths.py): a shared ZIP does not
    carry the layout of the server it came from."""
    if isinstance(value, dict):
        return {k: _no_server_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_server_paths(v) for v in value]
    if isinstance(value, str) and value.startswith(("/", "~")):
        return shown(value)
    return value


def zip_of(results: Sequence[StoredResult]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        meta = []
        for r in results:
            z.writestr(file_name(r), r.png())
            entry = _no_server_paths({**r.summary(), "image": file_name(r)})
            photo = _start_photo(r)
            if photo is not None:  # the photo it started from travels with it, not just a path on the server
                entry["start_photo"] = f"start_{photo.name}"
                if f"start_{photo.name}" not in z.namelist():
                    z.writestr(f"start_{photo.name}", photo.read_bytes())
            meta.append(entry)
        z.writestr("results.json", json.dumps(meta, indent=2))
    return buf.getvalue()
