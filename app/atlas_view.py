"""A layer's units as a fast grid: hundreds of small pictures in one element, searchable by class name, sortable by
activation, paged. Each picture links to its unit (the same ?model=&layer=&unit= link a slide would use), so a
click opens the unit's card.

Needs no engine (names come in a LayerNames): on a fresh server Browse draws this grid before the network loads.
Only the pictures of the page shown are read, each checked against its checksum as it is read."""
from __future__ import annotations

import base64
import hashlib
import html
import io
from typing import Sequence
from urllib.parse import urlencode

import streamlit as st
from PIL import Image

from dgnam_engine.store import ResultsStore, StoredResult

from dgnam_engine import numbers

from .figures import fixed
from .links import presenting
from .names import LayerNames
from .plain import plain

PAGE = 120  # pictures per page: the first screen of a class layer shows at least 100
THUMB = 96  # px in the grid
THUMB_FILE = 128  # px of the pictures sent: a little sharper than the cell, about 6 KB each
SORTS = {"unit number": None, "strongest activation first": True, "weakest activation first": False}


@st.cache_data(show_spinner=False, max_entries=4096)
def _thumb(_data: bytes, digest: str) -> str:
    """A small WebP of a stored picture's bytes, as a data URL (cached by the bytes' sha256, `digest`)."""
    with Image.open(io.BytesIO(_data)) as im:
        if im.format == "WEBP" and im.width <= THUMB_FILE:  # an atlas picture is one already: sent as it is
            return "data:image/webp;base64," + base64.b64encode(_data).decode()
        im = im.convert("RGB")
        if im.width > THUMB_FILE:
            im = im.resize((THUMB_FILE, THUMB_FILE), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="WEBP", quality=75)
    return "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode()


def _url(model: str, layer: str, unit: int, keep: dict) -> str:
    """The unit's link, carrying the grid's search, order and page: the click reloads the page, and the grid
    comes back as it was under the card."""
    q = {"model": model, "layer": layer, "unit": unit, **keep}
    if presenting():
        q["present"] = 1
    return "?" + urlencode(q)


def _cell(names: LayerNames, unit: int, keep: dict, src: str, title: str) -> str:
    name = html.escape(names.unit_name(unit))
    return (f'<a class="atlas-cell" href="{html.escape(_url(names.model, names.layer, unit, keep))}" '
            f'target="_self" title="{html.escape(title)}"><img src="{src}" alt="{name}" width="{THUMB}" '
            f'height="{THUMB}"><span>{name}</span></a>')


def grid_html(results: Sequence[StoredResult], names: LayerNames, store: ResultsStore,
              keep: dict | None = None) -> str:
    """The cells of `results`, each from its picture's checked bytes: a missing or damaged picture (the store sets
    it aside and reports it) gets no cell."""
    cells = []
    for r in results:
        data = store.picture_bytes(r)
        if data is None:
            continue
        src = _thumb(data, r.checksum or hashlib.sha256(data).hexdigest())
        cells.append(_cell(names, r.unit, keep or {}, src,
                           f"{names.unit_name(r.unit)} · activation {fixed(r.activation_final)}"))
    return f'<div class="atlas-grid">{"".join(cells)}</div>'


def match_rank(name: str, unit: int, query: str) -> int:
    """0 for an exact match (the whole name, or the unit number), 1 for a name that starts with the text, 2 for
    any other match: typing "bee" puts the class bee before bee eater and the other bees."""
    bare = name.rsplit(" (", 1)[0].lower() if name.endswith(")") else name.lower()
    if query in (bare, str(unit), f"unit {unit}", name.lower()):
        return 0
    return 1 if bare.startswith(query) else 2


def _from_link(key: str, name: str, cast, options=None) -> None:
    """A grid state the address carries (after a click on a picture), taken once per session."""
    value = st.query_params.get(name)
    if value is None or key in st.session_state:
        return
    try:
        value = cast(value)
    except ValueError:
        return
    if options is None or value in options:
        st.session_state[key] = value


def atlas(results: Sequence[StoredResult], names: LayerNames, store: ResultsStore, key: str) -> dict:
    """Search, sort, page and draw the grid of a layer's best pictures (one per unit). The one search box of
    Browse: exact matches first, and a unit without a picture opens from here too. Returns the grid's state for
    the page's address (what differs from the defaults)."""
    model, layer, classes = names.model, names.layer, names.classes is not None
    _from_link(f"{key}_find", "q", str)
    _from_link(f"{key}_sort", "sort", str, list(SORTS))
    _from_link(f"{key}_page", "page", int)
    c1, c2, c3 = st.columns([1.4, 1.2, 1])
    query = c1.text_input("Find a class (name or number)" if classes else "Find a unit (number)",
                          key=f"{key}_find", placeholder="e.g. bee, dog, 207" if classes else "e.g. 17",
                          ).strip().lower()
    order = c2.selectbox("Order", list(SORTS), key=f"{key}_sort")
    n_units = names.units
    name = {r.unit: names.unit_name(r.unit) for r in results}
    shown = [r for r in results if not query or query in name[r.unit].lower()]
    if SORTS[order] is None:
        shown.sort(key=lambda r: r.unit)
    else:
        shown.sort(key=lambda r: r.activation_final, reverse=SORTS[order])
    if query:
        shown.sort(key=lambda r: match_rank(name[r.unit], r.unit, query))  # stable: the order within each rank
    pages = max(1, -(-len(shown) // PAGE))
    if st.session_state.get(f"{key}_page", 1) > pages:
        st.session_state[f"{key}_page"] = 1
    page = c3.number_input(f"Page (of {pages})", 1, pages, key=f"{key}_page") if pages > 1 else 1
    keep = {k: v for k, v in (("q", query), ("sort", order if SORTS[order] is not None else ""),
                              ("page", page if page > 1 else "")) if v}
    part = shown[(page - 1) * PAGE:page * PAGE]
    # a unit without a picture yet: the exact one typed opens from here (its card has the Render button)
    have = {r.unit for r in results}
    wanted = names.find(query) if query and classes else \
        [int(query)] if numbers.is_whole(query) and int(query) < n_units else []
    missing = [u for u in wanted if u not in have and match_rank(names.unit_name(u), u, query) == 0]
    if missing:
        u = missing[0]
        st.html(f'<p class="atlas-missing">{html.escape(names.unit_name(u))} has no picture yet: '
                f'<a href="{html.escape(_url(model, layer, u, keep))}" target="_self">open it to render it</a>.</p>')
    if not results:
        st.caption("Nothing rendered in this layer yet. Type a unit above to open it, or use **Run**.")
        return keep
    st.caption(f"{len(shown)} of {len(results)} units with a picture"
               + (f" match “{plain(query)}”" if query else "") + ". Click a picture to open its card.")
    st.html(grid_html(part, names, store, keep))
    return keep
