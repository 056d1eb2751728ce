"""The page's address: presentation mode (`?present=1`) and the links this session opened or wrote. Below both
layout and widgets, which read it."""
from __future__ import annotations

import streamlit as st

PRESENT = "present"  # session key and URL parameter (?present=1) of presentation mode


def presenting() -> bool:
    return bool(st.session_state.get(PRESENT))


def _known_links() -> set:
    return st.session_state.setdefault("_links_known", set())


def _link_key(params: dict) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def is_new_link(params: dict) -> bool:
    """True once for an address this session has neither opened nor written. Every rerun carries the browser's
    address, which lags behind the one the last run wrote when the user clicks quickly; such a stale address must
    not undo the user's newer pick."""
    known, key = _known_links(), _link_key(params)
    if key in known:
        return False
    known.add(key)
    return True


def wrote_link(params: dict) -> None:
    """Make the page's address the selection (a link to copy) and remember it as this session's own."""
    keep = {PRESENT: "1"} if presenting() else {}  # the link still presents
    st.query_params.from_dict({**{k: str(v) for k, v in params.items()}, **keep})
    _known_links().add(_link_key(params))
