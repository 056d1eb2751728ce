"""Run: one button renders the chosen unit(s), with live progress, a preview and a Stop button."""
import streamlit as st

from app import beyond, cards, catalog, layout, runs, widgets
from dgnam_engine.runner import Settings
from dgnam_engine.worker import Request

layout.page_header("Render a neuron", "Pick a network and a unit, then press **Render**. The picture shows what "
                   "that unit responds to most.")

sel = widgets.pick_unit("run", multi=True)
if sel is not None:
    # prior, quick preview and the button on one row: at 1280x720 the pictures start above the fold
    c1, c2, c3 = st.columns([2.2, 1, 0.8], vertical_alignment="bottom")
    with c1:
        prior = widgets.pick_prior("run")
    button_slot = c3.empty()  # filled once the settings are checked
    quick = False if layout.presenting() else c2.toggle(
        "Quick preview", key="run_quick", help="A first look in seconds: fewer steps on the fastest path. Its "
        "pictures are marked 'quick preview' and never replace a full run. Turn off for the full run.")
    adv = widgets.advanced("run", sel.model, preview=quick)
    method = catalog.method_of(prior)
    more = beyond.beyond("run", sel.model, sel.layer, method)
    picked = sel.units[:1] if more.objective else sel.units  # a combination is one picture per seed
    units = [u for u in picked for _ in range(adv.n_seeds)]
    seeds = [adv.seed + k for _ in picked for k in range(adv.n_seeds)]
    settings = Settings(method=method, prior=prior if method == "dgnam" else None, n_iters=adv.steps,
                        lr_start=adv.lr, seed=adv.seed, position=more.position, init_image=more.init_image,
                        objective=more.objective)
    problem = adv.problem or more.problem
    if quick:
        settings = settings.as_preview()
    req = Request(sel.model, units, sel.layer, settings, seeds)
    go = button_slot.button("Render", type="primary", key="run_go", icon=":material/play_arrow:",
                            disabled=problem is not None, width="stretch")
    runs.stopped_notice("run")
    if problem is None:
        [results] = runs.render([("render", req)], "run", run=go)
        done = [r for r in results if r is not None]
    else:
        results, done = [], []
    if done:
        if len(done) < len(results):
            st.caption(f"{len(done)} of {len(results)} pictures are ready; press Render for the rest.")
        elif not go:
            st.caption("Rendered before with these settings: shown from the library.")
        chart = cards.activation_chart({f"{cards.unit_caption(r)} · seed {r.seed}": r.activations for r in done})
        if len(done) <= 2:  # pictures and their curves side by side
            *pic_cols, chart_col = st.columns([1, 1, 2] if len(done) == 2 else [1, 2])
        else:
            pic_cols, chart_col = st.columns(4), None
        for i, r in enumerate(done):
            pic_cols[i % len(pic_cols)].image(str(r.image_path), caption=cards.caption(r), width="stretch")
        (chart_col or st).plotly_chart(chart, width="stretch", config=cards.CHART_CONFIG)
        st.caption(catalog.TERMS["activation"])
        if any(r.prior_kind == "trained" for r in done):
            st.caption(catalog.DEMO_CAVEAT)
        if not layout.presenting():
            with st.expander("Details of each picture"):
                for r in done:
                    cards.result_card(r, f"run_card_{r.key}")
    elif not go and problem is None:
        st.caption("Not rendered yet with these settings.")
