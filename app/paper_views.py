"""On a unit's card: the paper's checks of one picture. A second opinion (what an independent ImageNet network sees
in it) and, below, the nearest real photos (is it a copy of a training photo?)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from dgnam_engine import judge
from dgnam_engine.errors import UserError
from dgnam_engine.store import StoredResult

from . import state


@st.cache_data(show_spinner=False, max_entries=512)
def _opinion(root: str, key: str, path: str, unit: int) -> dict:
    return judge.for_result(Path(root), key, np.array(Image.open(path).convert("RGB")), unit)


def second_opinion(r: StoredResult) -> None:
    """One line under the picture: the judge's top classes and the intended class's rank."""
    if judge.applies(r.model, r.layer, r.unit, r.label, r.prior) is not None:
        return
    try:
        op = _opinion(str(state.store().root), r.key, str(r.image_path), r.unit)
    except (UserError, OSError) as exc:
        st.caption(f"No second opinion: {exc}")
        return
    st.markdown(f"**Another network sees:** " + ", ".join(f"{t['name']} ({t['probability']:.0%})"
                                                          for t in op["top5"]))
    st.caption(f"{op['intended_name']} is its #{op['rank']} of 1000 ({op['judge']}: neither the network the picture "
               "was made for nor the prior's encoder, so it says whether the picture is recognisable, not only "
               "whether it drives the unit).")
