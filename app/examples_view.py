"""On a unit's card: the real photos that drive the unit most, next to its synthesis, and how the two compare (the
paper's point: a synthetic preferred input drives a unit far harder than its best real photos)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import streamlit as st

from dgnam_engine import dataset_index as D
from dgnam_engine.errors import UserError
from dgnam_engine.photos import read_photo, square
from dgnam_engine.store import StoredResult, file_identity

from . import catalog, state
from .figures import fixed
from .paths import shown
from .plain import message, plain

TOP = 9


def _db() -> D.ExamplesDB:
    return D.ExamplesDB(Path(state.store().root))


@st.cache_data(show_spinner=False, max_entries=512)
def _picture(path: str, size: int, box: Optional[tuple[int, int, int, int]]) -> Optional[np.ndarray]:
    """The photo as the model saw it (centre square at its input size), cut to `box` for a convolutional unit."""
    try:
        img = square(read_photo(path), size)
    except UserError:
        return None  # moved or changed since it was indexed
    if box is not None:
        top, left, bottom, right = box
        img = img[top:bottom, left:right]
    return img


@st.cache_data(show_spinner=False, max_entries=2048)
def _top1(model: str, path: str) -> int:
    """The network's own first class for a photo as it saw it when indexed (-1 if the photo is gone)."""
    from dgnam_engine.convention import from_uint8

    target = catalog.target(model)
    img = _picture(path, target.spec.input_size, None)
    if img is None:
        return -1
    return int(target.classify(from_uint8(img))[0].argmax())


def _build(model: str, layer: str, key: str) -> None:
    """Index the offline corpus for this layer, with a progress bar."""
    target = catalog.target(model)
    bar = st.progress(0.0, text="Preparing the photos…")
    try:
        folder = D.default_folder()

        def progress(done, total, rate):
            bar.progress(done / max(total, 1), text=f"{done} of {total} photos · {rate:.1f} photos/s")

        D.build(target, file_identity(target.weights_path), [layer], folder, _db(), progress=progress)
    except UserError as exc:
        st.error(message(exc))
        return
    bar.empty()


def real_examples(r: StoredResult, key: str) -> None:
    from dgnam_engine.receptive_field import receptive_field

    target = catalog.target(r.model)
    info = target.layer(r.layer)
    st.markdown("**Real photos that drive this unit most**")
    try:  # a damaged or unreadable examples index costs this part of the card only
        db = _db()
        idx, rows = D.examples(db, target.name, file_identity(target.weights_path), info.name, r.unit, TOP)
    except UserError as exc:
        st.warning(message(exc), icon=":material/error:")
        return
    if idx is None:
        st.caption("No photos have been looked through for this layer yet.")
        if db.read_only:
            st.caption("The data folder is read-only, so they cannot be looked through here.")
            return
        if st.button("Find them in the offline photo collection", key=f"{key}_index",
                     icon=":material/image_search:",
                     help="Runs every photo of the project's offline collection through the network once (a "
                          "minute or so on a laptop) and keeps, for every unit of this layer, the photos it likes "
                          "most."):
            _build(r.model, r.layer, key)
            st.rerun()
        return
    cols = st.columns(TOP)
    for col, ex in zip(cols, rows):
        box = receptive_field(target, info, (ex.row, ex.col)) if info.kind == "conv" else None
        img = _picture(ex.image, target.spec.input_size, box)
        if img is not None:
            col.image(img, caption=f"{plain(Path(ex.image).stem[:18])} · {fixed(ex.activation)}", width="stretch")
    if rows:
        best = rows[0].activation
        ratio = f" ({r.activation_final / best:.1f}x)" if best > 0 and r.activation_final > 0 else ""
        if catalog.is_class_layer(r.model, r.layer):
            of_class = sum(_top1(r.model, ex.image) == r.unit for ex in rows)
            if _top1(r.model, rows[0].image) != r.unit:
                ratio = ""  # a ratio to a photo of something else would compare unlike with unlike
                label = catalog.markdown_name(r.label, r.model)
                st.caption(f"None of the photos that drive it most is a {label} to this network "
                           f"({of_class} of {len(rows)} are), so no ratio is shown.")
        st.caption(f"The synthesis drives this unit to **{fixed(r.activation_final)}**{ratio}; the best real photo to "
                   f"**{fixed(best)}**" + (" (patches: what the unit sees at its strongest position)"
                                         if info.kind == "conv" else "") + ".")
    if idx["done"] < 100:
        st.caption(f"Only {idx['done']} photos were looked through: too few to hold a photo of most classes "
                   "(python -m dgnam_engine index --images FOLDER indexes your own).")
    st.caption(f"Looked through {idx['done']} photos in {plain(shown(idx['folder']))}. With a few hundred photos, the top photos "
               "of many class units are not of that class: they are the closest this small collection has.")
