"""Browse neurons: a layer's units as a grid (the shipped atlas on a fresh install); a click on a picture, or a link
?model=...&layer=...&unit=..., opens that unit's result card above the grid.

On a fresh server the first page draws the shipped atlas's grid before it loads the engine (torch, the network),
then the pickers above it; if they pick another layer than the atlas's, the page is drawn again."""
import streamlit as st

from app import atlas_view, layout, pictures, state
from app.links import presenting, wrote_link
from app.names import LayerNames
from app.terms import TERMS
from dgnam_engine import numbers
from dgnam_engine.atlas import AtlasDamaged
from dgnam_engine.store import StoreError


def _what_is_this() -> None:
    """The app in a few lines, behind a button on the title's row: the grid keeps the first screen."""
    with st.popover("What am I looking at?", icon=":material/help:", width="stretch"):
        st.markdown(
            "A network that recognises photos is built from millions of tiny detectors. This app asks one of "
            "them: *what picture would excite you most?* It starts from a random picture and changes it, step by "
            "step, until the detector fires as strongly as it can. The result shows what that detector has "
            "learned to look for.\n\n" + "\n".join(f"- {text}" for text in TERMS.values()))


# one line of intro and the explanation on the title's row: at 1280x720 three rows of the grid on the first screen
layout.page_header("Browse neurons", "Each picture shows what one neuron of a trained network likes most; click one "
                   "to open its card.",
                   aside=None if presenting() or "unit" in st.query_params else _what_is_this)
card_slot = st.container()  # a unit's card, above the pickers and the grid (filled once they are read)
pick_slot = st.empty()
notice_slot = st.container()
grid_slot = st.container()


def _first_screen():
    """(names, grid) of the shipped atlas the address or the default opens, when the engine is not loaded yet and
    the grid is nothing but that atlas (one picture per unit, nothing rendered here); else None. The names come
    from the atlas's own labels (the engine's names of its units), checked against the engine's once it loads."""
    qp = st.query_params
    if layout.engine_loaded() or "unit" in qp or "selection" in st.session_state:
        return None
    try:
        store = state.store()
        for a in store.atlases:
            meta = a.meta()
            model, layer = meta.get("model"), meta.get("layer")
            if qp.get("model", model) != model or qp.get("layer", layer) != layer:
                continue
            grid = store.query(model=model, layer=layer, check_pictures=False)
            labels = {r.unit: r.label for r in grid}
            if not grid or not all(r.shipped for r in grid) or len(labels) != len(grid):
                return None
            n = max(labels) + 1
            complete = len(labels) == n and all(labels[u] != f"{layer} unit {u}" for u in labels)
            return LayerNames(model, layer, n, tuple(labels[u] for u in range(n)) if complete else None), grid
    except (StoreError, AtlasDamaged):
        return None  # the page below says what is wrong
    return None


def _placeholder_pickers(names: LayerNames) -> None:
    """The pickers' row while the engine loads: the same height, so the grid below stays where it is."""
    c1, c2 = st.columns([1, 1.4])
    c1.selectbox("Network", [names.model], disabled=True)
    c2.selectbox("Layer", [f"{names.layer} (loading the network…)"], disabled=True)


first = _first_screen()
if first is not None:
    with pick_slot.container():
        _placeholder_pickers(first[0])
    with grid_slot:
        first_keep = atlas_view.atlas(first[1], first[0], state.store(), "browse_atlas")
    with notice_slot:
        pictures.damaged_notice(state.store())

# What follows loads the engine (the network's layers, the renderer).
from app import cards, catalog, runs, widgets  # noqa: E402
from dgnam_engine.runner import Settings  # noqa: E402
from dgnam_engine.worker import Request  # noqa: E402

if first is not None:  # load the network behind the placeholder pickers: the pickers' "Loading the model…"
    from dgnam_engine import runner  # noqa: E402  spinner would be drawn over the search box

    _ = runner.get_target(first[0].model, state.device()).layers  # probes the layers (assigned: never shown)


def _open_unit(model: str, layer: str) -> int | None:
    """The unit whose card the address opens (a grid click or a link), or None: the page opens on the grid."""
    qp = st.query_params
    if "unit" not in qp or qp.get("model", catalog.DEFAULT_MODEL) != model or \
            qp.get("layer", catalog.output_layer(model)) != layer:
        return None
    text = str(qp["unit"]).split(",")[0]
    n = catalog.layers(model)[layer].units
    return int(text) if numbers.is_whole(text) and int(text) < n else None  # a bad one: the picker showed why


def _close_card() -> None:
    st.query_params.pop("unit", None)
    st.query_params.pop("version", None)


def _card(model: str, layer: str, unit: int) -> dict:
    """The unit's card: its picture (the shipped atlas's unless this visitor picks another version), or a button
    that renders it. Returns what the address should carry besides model, layer and unit."""
    store = state.store()
    here = runs.best_first(store.query(model=model, layer=layer, unit=unit))
    name = catalog.unit_name(model, layer, unit)
    top = st.columns([1, 2.2, 1.2], vertical_alignment="center")
    top[0].button("Back to the grid", key="browse_close", icon=":material/grid_view:", on_click=_close_card)
    if not here:
        st.info(catalog.markdown_name(f"{name[:1].upper()}{name[1:]}", model) + " has not been rendered yet.")
        prior = catalog.default_prior()
        settings = Settings(method="pixel" if prior == catalog.PIXEL else "dgnam",
                            prior=None if prior == catalog.PIXEL else prior, n_iters=state.default_steps())
        go = st.button("Render it now", type="primary", key="browse_go", icon=":material/play_arrow:",
                       help=f"Default settings with the {catalog.prior_title(prior)}.")
        runs.stopped_notice("browse")
        if go:
            [[r]] = runs.render([(name, Request(model, [unit], layer, settings))], "browse", True)
            if r is not None:
                st.rerun()  # show it as a stored result, with its card
        return {}
    by_key = {r.key: r for r in here}
    vkey = f"browse_version_{model}_{layer}_{unit}"  # each unit keeps the version this visitor picked
    link_version = st.query_params.get("version")
    if link_version and widgets.is_new_link({"version": link_version, "unit": unit}):
        st.session_state[vkey] = next((k for k in by_key if k.startswith(link_version)), None)
    if st.session_state.get(vkey) not in by_key:
        st.session_state[vkey] = here[0].key
    if len(here) > 1:
        st.selectbox(f"{len(here)} versions of this unit", list(by_key), key=vkey,
                     format_func=lambda k: runs.version_label(by_key[k]))
    r = by_key[st.session_state[vkey]]
    if r.shipped:
        _full_size(r, vkey, top[1], top[2])
    cards.result_card(r, "browse_card")
    return {} if r.key == here[0].key else {"version": r.key[:8]}  # a link carries a picked version


def _full_size(r, vkey: str, c1, c2) -> None:
    """An atlas picture ships as a small thumbnail: one click renders it again at full size with the same
    settings (watching it form), and keeps it in this computer's results."""
    c1.caption("The atlas's small picture (128 px): render it at full size to download it sharp and watch it "
               "form.")
    go = c2.button("Full size, rendered live", key="browse_full", icon=":material/high_quality:", width="stretch")
    runs.stopped_notice("browse_full")
    if go:
        method = catalog.method_of(r.prior)
        settings = Settings(prior=r.prior if method == "dgnam" else None, method=method,
                            n_iters=r.settings.get("n_iters"), seed=r.seed)
        req = Request(r.model, [r.unit], r.layer, settings)
        [[new]] = runs.render([(catalog.unit_name(r.model, r.layer, r.unit), req)], "browse_full", True,
                              again=True)
        if new is not None:
            st.session_state[vkey] = new.key
            st.rerun()


with pick_slot.container():
    picked = widgets.pick_layer("browse")
if first is not None:
    if picked is None or catalog.layer_names(*picked) != first[0]:
        st.rerun()  # the engine picks another layer (or names its units otherwise): draw the page as it is
    wrote_link({"model": picked[0], "layer": picked[1], **first_keep})
elif picked is not None:
    model, layer = picked
    unit = _open_unit(model, layer)
    link = {"model": model, "layer": layer}
    if unit is not None:
        with card_slot:
            link |= {"unit": unit, **_card(model, layer, unit)}
            st.subheader(f"All of {catalog.friendly_layer(model, layer)} ({layer})")
    store = state.store()
    # only the pictures of the page shown are read and checked (atlas_view), not the whole layer's
    grid = runs.best_per_unit(store.query(model=model, layer=layer, check_pictures=False))
    with grid_slot:
        link |= atlas_view.atlas(grid, catalog.layer_names(model, layer), store, "browse_atlas")
    with notice_slot:
        pictures.damaged_notice(store)
    wrote_link(link)
