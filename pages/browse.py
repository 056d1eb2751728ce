"""Browse neurons: pick model -> layer -> unit; see the units already rendered; open a unit's result card.
Each unit has its own link: ?model=...&layer=...&unit=... opens it directly."""
import streamlit as st

from app import atlas_view, cards, catalog, layout, pictures, runs, state, widgets
from dgnam_engine.runner import Settings
from dgnam_engine.worker import Request

layout.page_header("Browse neurons", "Each picture shows what one neuron of a trained network likes most. Pick a "
                   "unit, or open a picture already rendered; the page address links straight to it.")
if not layout.presenting():
    with st.expander("What am I looking at?", icon=":material/help:"):
        st.markdown(
            "A network that recognises photos is built from millions of tiny detectors. This app asks one of "
            "them: *what picture would excite you most?* It starts from a random picture and changes it, step by "
            "step, until the detector fires as strongly as it can. The result shows what that detector has "
            "learned to look for.\n\n"
            + "\n".join(f"- **{term.capitalize()}**: {text}" for term, text in catalog.TERMS.items()))


sel = widgets.pick_unit("browse")
if sel is not None:
    store = state.store()
    here = runs.best_first(store.query(model=sel.model, layer=sel.layer, unit=sel.unit))
    if here:
        options = [r.key for r in here]
        chosen = st.session_state.get("browse_version")
        if chosen not in options:
            st.session_state["browse_version"] = options[0]
        if len(here) > 1:
            by_key = {r.key: r for r in here}
            st.selectbox(f"{len(here)} versions of this unit", options, key="browse_version",
                         format_func=lambda k: runs.version_label(by_key[k]))
        r = next(r for r in here if r.key == st.session_state["browse_version"])
        cards.result_card(r, "browse_card")
    else:
        st.info(f"{catalog.unit_name(sel.model, sel.layer, sel.unit)} has not been rendered yet.")
        prior = catalog.default_prior()
        settings = Settings(method="pixel" if prior == catalog.PIXEL else "dgnam",
                            prior=None if prior == catalog.PIXEL else prior, n_iters=state.default_steps())
        go = st.button("Render it now", type="primary", key="browse_go", icon=":material/play_arrow:",
                       help=f"Default settings with the {catalog.prior_title(prior)}.")
        runs.stopped_notice("browse")
        if go:
            [[r]] = runs.render([("render", Request(sel.model, [sel.unit], sel.layer, settings))], "browse", True)
            if r is not None:
                st.rerun()  # show it as a stored result, with its card

    st.subheader(f"Rendered in {catalog.friendly_layer(sel.model, sel.layer)} ({sel.layer})")
    grid = runs.best_per_unit(store.query(model=sel.model, layer=sel.layer))
    pictures.damaged_notice(store)
    if grid:
        atlas_view.atlas(grid, sel.model, sel.layer, "browse_atlas")
    else:
        st.caption("Nothing rendered in this layer yet. Use **Run** or the button above.")
