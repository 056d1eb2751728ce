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

from dgnam_engine.neighbours import CLOSE as N_CLOSE, COPY as N_COPY

from . import state
from .plain import message


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
        st.caption("No second opinion: " + message(exc))
        return
    st.markdown(f"**Another network sees:** " + ", ".join(f"{t['name']} ({t['probability']:.0%})"
                                                          for t in op["top5"]))
    st.caption(f"{op['intended_name']} is its #{op['rank']} of 1000 ({op['judge']}: neither the network the picture "
               "was made for nor the prior's encoder, so it says whether the picture is recognisable, not only "
               "whether it drives the unit).")


@st.cache_resource(show_spinner=False)
def _shipped_photos():
    from dgnam_engine import neighbours as N

    return N.shipped()


@st.cache_data(show_spinner=False, max_entries=256)
def _nearest(key: str, path: str, prior: str, k: int) -> dict:
    from dgnam_engine import neighbours as N

    coll = _shipped_photos()
    if coll.space != N.space_for(prior):
        raise UserError(f"this prior's feature space is {':'.join(N.space_for(prior))}; the shipped photos are "
                        f"indexed in {':'.join(coll.space)} (python -m dgnam_engine neighbours --images FOLDER)")
    return N.check([np.array(Image.open(path).convert("RGB"))], coll, k)[0]


def nearest_photos(r: StoredResult, key: str, k: int = 5) -> None:
    """The memorisation check on the card: the nearest training photos of the demo priors, with distances."""
    st.markdown("**Nearest training photos** (is the picture a copy?)")
    try:
        res = _nearest(r.key, str(r.image_path), r.prior, k)
    except (UserError, OSError) as exc:
        st.caption(message(exc))
        return
    coll = _shipped_photos()
    index = {p["file"]: i for i, p in enumerate(coll.photos)}
    cols = st.columns(k)
    for col, row in zip(cols, res["deep"]):
        thumb = coll.thumb(index[row["file"]])
        name = row["file"].split("__", 1)[-1][:16]
        if thumb is not None:
            col.image(thumb, caption=f"{name} · {row['distance']:.1f}", width="stretch")
        else:
            col.caption(f"{name} · {row['distance']:.1f} (no thumbnail: its licence asks for terms we do not pass "
                        "on)")
    words = {"copy": "a copy of a training photo", "close": "close to a training photo", "new": "a new picture"}
    st.caption(f"Novelty **{res['novelty']:.2f}**: **{words[res['verdict']]}**. The distance to the nearest of the "
               f"{res['pixel_photos']} training photos with thumbnails ({res['nearest']}), in {res['decided_by']} "
               "space (the picture's structure or early features, which the optimisation does not push), divided "
               "by how far those photos are from each other. A training photo scores about 0 (a copy), coloured "
               f"noise above 1; below {N_COPY} is called a copy, below {N_CLOSE} close.")
