"""Drawing stored pictures: every good one is drawn, a damaged one is marked instead of breaking the page."""
from __future__ import annotations

from typing import Optional

import streamlit as st

from dgnam_engine.store import ResultsStore, StoredResult, picture_problem

DAMAGED = "This picture was damaged and has been set aside; it is rendered again when asked for."


def show(r: StoredResult, caption: Optional[str] = None, width: str = "stretch") -> bool:
    """Draw one stored picture from its verified bytes; a picture that went bad since the query (or does not
    decode) gets a marked placeholder. Returns whether the picture was drawn."""
    why = picture_problem(r.image_path, r.checksum)
    if why is None:
        try:
            st.image(r.image_path.read_bytes(), caption=caption, width=width)
            return True
        except Exception:  # noqa: BLE001 - the placeholder below says it
            why = "does not decode"
    st.warning(f"{caption + ': ' if caption else ''}picture {why}. {DAMAGED}", icon=":material/broken_image:")
    return False


def damaged_notice(store: ResultsStore) -> None:
    """One line about the damaged pictures the store found and set aside (each is reported once)."""
    found = [p for p in store.problems() if p["image"] is not None]
    values = [p for p in store.problems() if p["image"] is None]
    if values:
        units = ", ".join(f"{p['model']} {p['layer']} unit {p['unit']}" for p in values[:5])
        st.warning(f"{len(values)} stored result{'s hold' if len(values) > 1 else ' holds'} damaged values and "
                   f"{'were' if len(values) > 1 else 'was'} set aside ({units}{', ...' if len(values) > 5 else ''}): "
                   "the others are shown; `python -m dgnam_engine store check --repair` removes "
                   f"{'them' if len(values) > 1 else 'it'}, and each is rendered again when asked for.",
                   icon=":material/broken_image:")
    if found:
        units = ", ".join(f"{p['model']} {p['layer']} unit {p['unit']}" for p in found[:5])
        st.warning(f"{len(found)} damaged picture{'s were' if len(found) > 1 else ' was'} set aside ({units}"
                   f"{', ...' if len(found) > 5 else ''}): the others are shown, and each is rendered again when "
                   "asked for.", icon=":material/broken_image:")
