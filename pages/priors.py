"""Compare priors: one unit through the priors of layers 3, 5, 6 and 7 and the pixel baseline, same seed."""
import streamlit as st

from app import cards, catalog, layout, runs, widgets
from dgnam_engine.runner import Settings
from dgnam_engine.worker import Request

layout.page_header("Compare priors", "The same unit and the same starting seed, rendered through generators that "
                   "invert different depths of a network (layers 3, 5, 6, 7), next to the pixel-space baseline "
                   "without any prior.")

sel = widgets.pick_unit("cmpp")
if sel is not None:
    adv = widgets.advanced("cmpp", sel.model, seeds_side_by_side=False)
    lineup = catalog.depth_lineup()
    entries = [(depth, choice) for depth, choice in lineup] + [("pixel", None)]
    requests, slots = [], []
    for depth, choice in entries:
        if depth == "pixel":
            s = Settings(method="pixel", n_iters=adv.steps, lr_start=adv.lr, seed=adv.seed)
            title = "no prior (pixel baseline)"
        elif choice is None:
            slots.append((depth, None, None))
            continue
        else:
            s = Settings(prior=choice.name, n_iters=adv.steps, lr_start=adv.lr, seed=adv.seed)
            title = f"{depth} · {'original' if choice.kind == 'original' else 'demo prior ' + choice.name}"
        requests.append((title, Request(sel.model, [sel.unit], sel.layer, s)))
        slots.append((depth, title, len(requests) - 1))
    if not any(c for _, c in lineup):
        st.warning(catalog.NO_PRIOR)
    go = st.button("Render all side by side", type="primary", key="cmpp_go", icon=":material/play_arrow:")
    runs.stopped_notice("cmpp")
    results = runs.render(requests, "cmpp", run=go)
    cols = st.columns(len(slots))
    finals, curves = {}, {}
    for col, (depth, title, idx) in zip(cols, slots):
        with col:
            st.markdown(f"**{title or depth}**")
            if idx is None:
                st.caption(f"No {depth} prior here. Get the original with `{catalog.fetch_command(depth)}`.")
                continue
            r = results[idx][0]
            if r is None:
                st.caption("Not rendered yet.")
                continue
            st.image(str(r.image_path), caption=f"activation {r.activation_final:.1f}", width="stretch")
            finals[title] = r.activation_final
            curves[title] = r.activations
    if finals:
        c1, c2 = st.columns(2)
        c1.plotly_chart(cards.final_bar_chart(finals), width="stretch", config=cards.CHART_CONFIG)
        c2.plotly_chart(cards.activation_chart(curves), width="stretch", config=cards.CHART_CONFIG)
    if any(c is not None and c.kind == "trained" for _, c in lineup):
        st.caption(catalog.DEMO_CAVEAT)
