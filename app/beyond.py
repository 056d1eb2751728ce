"""Run beyond one class unit from noise: start from a photo, pick a hidden unit's position on its map, or combine
units in one objective. Each returns what goes into the run's Settings, or a reason in words why Render is off."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import streamlit as st
from PIL import Image, ImageDraw

from dgnam_engine import objectives
from dgnam_engine.convention import from_uint8
from dgnam_engine.errors import UserError
from dgnam_engine.imaging import save_png
from dgnam_engine.photos import MAX_BYTES, read_photo

from . import catalog, state
from .figures import fixed
from .plain import message, plain

SAMPLES_DIR = Path(__import__("skimage").__file__).parent / "data"  # photos scikit-image ships (CC0 / public domain)
SAMPLES = {"a cup of coffee": "coffee.png", "a cat (Chelsea)": "chelsea.png", "an astronaut": "astronaut.png"}
UPLOAD_FORMATS = {"JPEG": ("jpg", "jpeg"), "PNG": ("png",), "WebP": ("webp",)}  # what the upload box takes
MAX_MB = MAX_BYTES // 2**20


def upload_label() -> str:
    """'Your photo (JPEG, PNG or WebP, up to 30 MB)': the formats the box takes and the size the engine reads."""
    names = list(UPLOAD_FORMATS)
    return f"Your photo ({', '.join(names[:-1])} or {names[-1]}, up to {MAX_MB} MB)"


@dataclass
class Beyond:
    init_image: Optional[str] = None
    position: Optional[tuple[int, int]] = None
    objective: Optional[str] = None
    problem: Optional[str] = None


def saved_upload(data: bytes, name: str) -> str:
    """A validated upload, re-encoded as a PNG named by its content in the data folder: the same photo is the same
    file (and so the same stored result), and nothing the browser sent is kept as it came."""
    rgb = read_photo(data, name=name)
    path = Path(state.store().root) / "uploads" / f"{hashlib.sha256(data).hexdigest()[:24]}.png"
    if not path.is_file():
        save_png(rgb, path)
    return str(path)


def photo_start(prefix: str) -> tuple[Optional[str], Optional[str]]:
    """(photo path or None, problem or None): an upload or one of the sample photos."""
    choice = st.radio("Start from", ["random noise (as the paper)", "a photo"], key=f"{prefix}_start",
                      horizontal=True, help="From a photo, the picture changes from the photo into what the unit "
                      "wants: it shows what the unit adds (the paper's third example).")
    if choice.startswith("random"):
        return None, None
    c1, c2 = st.columns([1, 1])
    # the box lets through twice the engine's limit (.streamlit/config.toml): a photo a little too big gets the
    # engine's line in words, not just the box's red mark
    up = c1.file_uploader(upload_label(), type=[t for ts in UPLOAD_FORMATS.values() for t in ts],
                          key=f"{prefix}_upload", max_upload_size=2 * MAX_MB)
    sample = c2.selectbox("…or a sample photo", list(SAMPLES), key=f"{prefix}_sample")
    if up is not None:
        try:
            path = saved_upload(up.getvalue(), up.name)
        except UserError as exc:
            return None, f"{message(exc)}. Render is off until a usable photo is chosen."
        whose = f"your {up.name}"
    else:
        path, whose = str(SAMPLES_DIR / SAMPLES[sample]), f"sample: {sample}"
    c1.image(path, width=140, caption=plain(f"starting photo ({whose})"))
    return path, None


def grid_image(h: int, w: int, pos: tuple[int, int], cell: int = 14) -> np.ndarray:
    """A small drawing of the layer's h x w map with the chosen position filled."""
    im = Image.new("RGB", (w * cell + 1, h * cell + 1), (245, 245, 245))
    d = ImageDraw.Draw(im)
    for r in range(h):
        for c in range(w):
            fill = (220, 60, 40) if (r, c) == pos else None
            d.rectangle([c * cell, r * cell, (c + 1) * cell, (r + 1) * cell], outline=(180, 180, 180), fill=fill)
    return np.asarray(im)


def position(prefix: str, model: str, layer: str) -> Optional[tuple[int, int]]:
    """Row and column on a convolutional layer's map (default: the centre), shown on a small grid."""
    info = catalog.layers(model)[layer]
    if info.kind != "conv":
        st.caption(f"No position to pick on {layer}: each of its units looks at the whole picture. Pick a "
                   "convolutional layer (blocks.…) to choose where a hidden unit looks.")
        return None
    h, w = info.shape[1:]
    c1, c2, c3 = st.columns([1, 1, 1.2])
    row = c1.slider("Row", 0, h - 1, h // 2, key=f"{prefix}_row_{layer}",
                    help="A hidden unit looks at one patch of the picture; pick which one.")
    col = c2.slider("Column", 0, w - 1, w // 2, key=f"{prefix}_col_{layer}")
    c3.image(grid_image(h, w, (row, col)), caption=f"position {row},{col} of the {h}x{w} map")
    return None if (row, col) == info.centre() else (row, col)  # the centre is the default: same stored result


def objective(prefix: str, model: str) -> tuple[Optional[str], Optional[str]]:
    """A combined objective typed as text, checked against the model: (text or None, problem or None)."""
    text = st.text_input("Combine units (optional)", key=f"{prefix}_objective",
                         placeholder="e.g. bee + 0.5*daisy, or 309 - 985",
                         help="Several units in one picture, each with a weight; a minus asks for less of a unit. "
                              "Hidden units: layer:unit@row,col, e.g. blocks.5:7@2,5.").strip()
    if not text:
        return None, None
    try:
        objectives.validate(catalog.target(model), objectives.parse(text, catalog.class_names(model)))
    except UserError as exc:
        return None, f"{message(exc)}. Render is off until the combination can be read."
    return text, None


def beyond(prefix: str, model: str, layer: str, method: str) -> Beyond:
    """The 'beyond one unit' settings, in one expander; hidden in presentation mode."""
    from . import layout

    if layout.presenting():
        return Beyond()
    out = Beyond()
    with st.expander("Start from a photo · hidden unit position · combine units"):
        if method == "dgnam":
            out.init_image, out.problem = photo_start(prefix)
        out.position = position(prefix, model, layer)
        text, problem = objective(prefix, model)
        out.objective = text
        out.problem = out.problem or problem
        if text and out.position is not None:
            out.position = None  # the terms carry their own positions
    if out.problem:
        st.error(out.problem, icon=":material/block:")
    return out


# ----- on a result's card ----------------------------------------------------------------------------------------

@st.cache_data(show_spinner="Encoding the photo…", max_entries=64)
def _photo_views(model: str, prior: str, init_image: str, layer: str, unit: int, position) -> dict:
    from dgnam_engine.runner import photo_views

    return photo_views(model, prior, init_image, layer, unit, tuple(position) if position else None,
                       state.device())


@st.cache_data(show_spinner=False, max_entries=256)
def _rf_box(model: str, layer: str, position: tuple[int, int]) -> tuple[int, int, int, int]:
    from dgnam_engine.receptive_field import receptive_field

    t = catalog.target(model)
    return receptive_field(t, t.layer(layer), position)


@st.cache_data(show_spinner=False, max_entries=256)
def _terms(model: str, text: str, path: str) -> list[tuple[str, float, float]]:
    """(unit, weight, activation in the saved picture) for each term of a combined objective."""
    import torch

    t = catalog.target(model)
    terms = objectives.parse(text, catalog.class_names(model))
    rgb = from_uint8(np.asarray(Image.open(path).convert("RGB")))
    with torch.no_grad():
        acts = objectives.term_activations(t, t.rgb_to_gen(rgb.to(t.device)), terms)[0]
    return [(term.describe(t), term.weight, float(a)) for term, a in zip(terms, acts)]


def variant_views(r, key: str) -> None:
    """What a result adds beyond its picture: the photo it started from and its reconstruction; the patch a hidden
    unit sees; each unit of a combination with its activation."""
    s = r.settings
    if s.get("init_image"):
        v = _photo_views(r.model, r.prior, s["init_image"], r.layer, r.unit, s.get("position"))
        st.markdown("**From a photo**: the photo, what the generator makes of its code (where the search starts) "
                    "and the result")
        c1, c2, c3 = st.columns(3)
        c1.image(v["photo"], caption=f"photo · activation {fixed(v['photo_activation'])}", width="stretch")
        c2.image(v["reconstruction"], caption=f"reconstruction · activation {fixed(v['reconstruction_activation'])}",
                 width="stretch")
        c3.image(str(r.image_path), caption=f"result · activation {fixed(r.activation_final)}", width="stretch")
    info = catalog.layers(r.model).get(r.layer)
    if info is not None and info.kind == "conv" and not s.get("objective"):
        pos = tuple(s.get("position") or info.centre())
        top, left, bottom, right = _rf_box(r.model, r.layer, pos)
        crop = np.asarray(Image.open(r.image_path).convert("RGB"))[top:bottom, left:right]
        c1, c2 = st.columns([1, 3])
        c1.image(crop, caption=f"what unit {r.unit} at {pos[0]},{pos[1]} sees ({right - left}x{bottom - top} px)",
                 width="stretch")
        c2.caption("A hidden unit looks at one patch of the picture, its receptive field; the rest of the picture "
                   "cannot change its activation.")
    if s.get("objective"):
        st.markdown(f"**Combination** `{s['objective']}`: each unit's activation in the picture")
        stored = (r.extra or {}).get("terms")  # what the run measured; results stored before it are measured here
        rows = ([(t["label"], t["weight"], t["activation"]) for t in stored] if stored
                else _terms(r.model, s["objective"], str(r.image_path)))
        # st.table draws each cell as Markdown: an added network's unit names are shown as written
        st.table([{"unit": catalog.markdown_name(name, r.model), "weight": f"{w:g}", "activation": fixed(a, 2)}
                  for name, w, a in rows],
                 hide_index=True)
