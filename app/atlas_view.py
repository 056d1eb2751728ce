"""A layer's units as a fast grid: hundreds of small pictures in one element, searchable by class name, sortable by
activation, paged. Each picture links to its unit (the same ?model=&layer=&unit= link a slide would use), so a
click opens the unit's card."""
from __future__ import annotations

import base64
import html
import io
from typing import Sequence
from urllib.parse import urlencode

import streamlit as st
from PIL import Image

from dgnam_engine.store import StoredResult

from . import catalog, layout
from .plain import plain

PAGE = 120  # pictures per page: the first screen of a class layer shows at least 100
THUMB = 96  # px in the grid
THUMB_FILE = 128  # px of the pictures sent: a little sharper than the cell, about 6 KB each
SORTS = {"unit number": None, "strongest activation first": True, "weakest activation first": False}


@st.cache_data(show_spinner=False, max_entries=4096)
def _thumb(path: str, mtime_ns: int) -> str:
    """A small WebP of a stored picture, as a data URL (cached per file version)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.width > THUMB_FILE:
            im = im.resize((THUMB_FILE, THUMB_FILE), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="WEBP", quality=75)
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode()


def _url(r: StoredResult) -> str:
    q = {"model": r.model, "layer": r.layer, "unit": r.unit}
    if layout.presenting():
        q["present"] = 1
    return "?" + urlencode(q)


def grid_html(results: Sequence[StoredResult]) -> str:
    cells = []
    for r in results:
        try:
            src = _thumb(str(r.image_path), r.image_path.stat().st_mtime_ns)
        except OSError:
            continue  # gone since the query: the store re-renders it when asked
        name = html.escape(catalog.unit_name(r.model, r.layer, r.unit))
        cells.append(f'<a class="atlas-cell" href="{html.escape(_url(r))}" target="_self" title="{name} · activation '
                     f'{r.activation_final:.1f}"><img src="{src}" alt="{name}" width="{THUMB}" '
                     f'height="{THUMB}"><span>{name}</span></a>')
    return f'<div class="atlas-grid">{"".join(cells)}</div>'


def atlas(results: Sequence[StoredResult], model: str, layer: str, key: str) -> None:
    """Search, sort, page and draw the grid of a layer's best pictures (one per unit)."""
    if not results:
        return
    c1, c2, c3 = st.columns([1.4, 1.2, 1])
    classes = catalog.is_class_layer(model, layer)
    query = c1.text_input("Find a class" if classes else "Find a unit", key=f"{key}_find",
                          placeholder="e.g. dog, 207" if classes else "e.g. 17").strip().lower()
    order = c2.selectbox("Order", list(SORTS), key=f"{key}_sort")
    shown = [r for r in results if not query or query in catalog.unit_name(model, layer, r.unit).lower()]
    if SORTS[order] is None:
        shown.sort(key=lambda r: r.unit)
    else:
        shown.sort(key=lambda r: r.activation_final, reverse=SORTS[order])
    pages = max(1, -(-len(shown) // PAGE))
    page = c3.number_input(f"Page (of {pages})", 1, pages, 1, key=f"{key}_page") if pages > 1 else 1
    part = shown[(page - 1) * PAGE:page * PAGE]
    st.caption(f"{len(shown)} of {len(results)} units with a picture" + (f" match “{plain(query)}”" if query else "")
               + ". Click a picture to open its card.")
    st.html(grid_html(part))
