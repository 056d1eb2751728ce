"""How results look: captions, the activation chart and the result card."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from dgnam_engine import runner
from dgnam_engine.store import StoredResult

from . import beyond, catalog, examples_view, export, layout, paper_views, pictures, runs
from .figures import fixed
from .plain import plain

CHART_CONFIG = {"displayModeBar": False}
ALPHA_HELP = ("MACO's alpha map: how strongly each pixel pushed the unit, summed over every step of the run. "
              "Bright parts of the picture carry the unit's evidence; faded parts hardly mattered.")


def unit_caption(r: StoredResult) -> str:
    if r.layer == catalog.output_layer(r.model) and r.label and not r.label.startswith(r.layer):
        return f"{r.label} ({r.unit})"
    return f"{r.layer} · unit {r.unit}"


def short_prior(name: str) -> str:
    return "pixel baseline" if name == catalog.PIXEL else "MACO" if name == catalog.MACO else f"{name} prior"


def title(r: StoredResult) -> str:
    """The unit, and what kind of variant the picture is when it is one: 'bee (309) · from a photo (coffee.png)'."""
    what = runs.variant_words(r)
    return unit_caption(r) + (f" · {what}" if what else "")


def title_markdown(r: StoredResult) -> str:
    """title() for Markdown: the class name (an added network's come from a user's file) and the variant's words
    (a combination, a file name) are shown as written."""
    what = runs.variant_words(r)
    return catalog.markdown_name(unit_caption(r), r.model) + (f" · {plain(what)}" if what else "")


def caption(r: StoredResult, with_model: bool = False) -> str:
    """A picture's caption (st.image draws captions as Markdown: the names and typed words are shown as written)."""
    head = f"{r.model} · " if with_model else ""
    head = ("quick preview · " if runs.is_preview(r) else "") + head
    small = " · atlas picture, 128 px" if r.shipped else ""
    return (f"{head}{title_markdown(r)} · {short_prior(r.prior)} · seed {r.seed} · "
            f"activation {fixed(r.activation_start)} → {fixed(r.activation_final)}{small}")


def activation_chart(curves: dict[str, Sequence[float]], title: str = "Activation over the steps") -> go.Figure:
    fig = go.Figure()
    for name, ys in curves.items():
        fig.add_trace(go.Scatter(x=list(range(1, len(ys) + 1)), y=list(ys), mode="lines", name=name))
    # the legend below the axis title: at projector sizes a legend just under the plot covered it
    fig.update_layout(title=title, xaxis_title="steps", yaxis_title="activation", height=340,
                      margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", yanchor="top", y=-0.25, x=0))
    return fig


def final_bar_chart(values: dict[str, float], title: str = "Final activation") -> go.Figure:
    fig = go.Figure(go.Bar(x=list(values), y=list(values.values()), text=[fixed(v) for v in values.values()],
                           textposition="auto"))
    fig.update_layout(title=title, yaxis_title="activation", height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig


@st.cache_data(show_spinner=False, max_entries=512)
def top5(model: str, key: str, path: str) -> list[tuple[int, str, float]]:
    """What the network itself sees in the picture (cached per result)."""
    import numpy as np

    image = np.array(Image.open(path).convert("RGB"))
    return runner.top_classes(catalog.target(model), image, 5)


def _settings_rows(r: StoredResult) -> list[dict]:
    """The settings table's rows. st.table draws each cell as Markdown: what came from a user (a class name of an
    added network, a photo's file name, a typed combination) is shown as written."""
    s = r.settings
    rows = [("network", r.model), ("layer", r.layer), ("unit", catalog.markdown_name(unit_caption(r), r.model)),
            ("prior", catalog.prior_title(r.prior)), ("seed", r.seed)]
    if s.get("init_image"):
        rows.append(("start", f"from the photo {plain(Path(str(s['init_image'])).name)}"))
    if s.get("position"):
        rows.append(("position", "row {}, column {} of the map".format(*s["position"])))
    if s.get("objective"):
        rows.append(("combination", plain(s["objective"])))
    rows += [("steps", f"{s.get('n_iters')}" + (" (quick preview)" if runs.is_preview(r) else "")),
             ("learning rate", f"{s.get('lr_start', 0):.3g} → {s.get('lr_end', 0):.3g}"),
             ("activation", f"{fixed(r.activation_start, 2)} → {fixed(r.activation_final, 2)}"),
             ("time", f"{r.seconds:.1f} s on {r.device}")]
    if s.get("accel"):  # the precision and, on a CPU, the threads of each pass: the picture depends on both
        threads = s.get("cpu_threads")
        rows.append(("computed in", f"{s['accel']}" + (f", {threads} thread{'s' if threads != 1 else ''} a pass"
                                                       if threads else "")))
    return [{"setting": k, "value": str(v)} for k, v in rows]


def result_card(r: StoredResult, key: str) -> None:
    """The full view of one result: picture, activation curve, top-5 classes, settings, download."""
    with st.container(border=True):
        st.subheader(title_markdown(r))
        if runs.is_variant(r):
            st.caption("A variant, not the unit's own picture (which starts from noise, at the centre, alone).")
        left, right = st.columns([1, 1.4])
        with left:
            alpha = r.alpha_path is not None and st.toggle(
                "Show where the evidence lies", key=f"{key}_alpha", help=ALPHA_HELP)
            if alpha:
                st.image(pictures.alpha_overlay(r.image_path, r.alpha_path),
                         caption="alpha map over the picture: " + caption(r), width="stretch")
            else:
                pictures.show(r, caption=caption(r))
        left.download_button("Download PNG (128 px atlas picture)" if r.shipped else "Download PNG", r.png(),
                             file_name=export.file_name(r), mime="image/png", key=f"{key}_dl",
                             icon=":material/download:")
        right.plotly_chart(activation_chart({short_prior(r.prior): r.activations}), width="stretch",
                           config=CHART_CONFIG, key=f"{key}_chart")
        if r.prior_kind == "trained":
            st.caption("Made with a demo prior. " + catalog.demo_caveat(layout.presenting()))
        paper_views.second_opinion(r)
        beyond.variant_views(r, key)
        examples_view.real_examples(r, key)
        paper_views.nearest_photos(r, key)
        c1, c2 = st.columns(2)
        with c1:
            st.markdown("**What the network sees in this picture**")
            classes = top5(r.model, r.key, str(r.image_path))
            if classes:
                st.dataframe([{"class": f"{n} ({i})", "probability": f"{p:.1%}"} for i, n, p in classes],
                             hide_index=True, width="stretch")
            else:
                st.caption("This network has no ImageNet classes to show.")
        with c2:
            st.markdown("**Settings used**")
            st.table(_settings_rows(r), border="horizontal", hide_index=True)  # wraps: no value cut off


def grid_caption(r: StoredResult) -> str:
    return f"{short_prior(r.prior)}" + (" · quick preview" if runs.is_preview(r) else "")
