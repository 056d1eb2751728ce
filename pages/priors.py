"""Compare priors: one unit through the priors of layers 3, 5, 6 and 7, the pixel baseline and MACO, same seed.
Each column shows its picture as soon as its own run finished, while the others still render."""
import streamlit as st

from app import cards, catalog, layout, runs, state, widgets
from app.figures import fixed
from dgnam_engine.runner import Settings
from dgnam_engine.worker import Request

layout.page_header("Compare priors", "One unit, one starting seed, six ways to draw it: picture generators "
                   "(priors) that learned from different depths of a network, and no prior at all: the pixel "
                   "baseline of 2016 and MACO, today's best pixel-space method.",
                   help=catalog.TERMS["prior"])

sel = widgets.pick_unit("cmpp")
if sel is not None:
    adv = widgets.advanced("cmpp", sel.model, seeds_side_by_side=False)
    lineup = catalog.depth_lineup()
    entries = [(depth, choice) for depth, choice in lineup] + [("pixel", None), ("maco", None)]
    requests, slots = [], []
    for depth, choice in entries:
        if depth == "pixel":
            s = Settings(method="pixel", n_iters=adv.steps, lr_start=adv.lr, seed=adv.seed)
            title = "no prior (pixel baseline)"
        elif depth == "maco":  # its own learning rate (NAdam's 1.0): the others' step sizes mean nothing to it
            s = Settings(method="maco", n_iters=adv.steps, seed=adv.seed)
            title = "no prior (MACO)"
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
    # the button, the progress and the way to the originals on one row: the pictures below stay where they are
    # while the run goes, each column showing its own picture forming
    b1, b2 = st.columns([1, 2.2], vertical_alignment="top")
    go = b1.button("Render all side by side", type="primary", key="cmpp_go", icon=":material/play_arrow:",
                   disabled=adv.problem is not None, width="stretch")
    stored = adv.problem is None and all(all(runs.stored_results(req)) for _, req in requests)
    again = stored and b1.button("Render all live again", key="cmpp_again", icon=":material/replay:",
                                 width="stretch", help="All stored already, so shown at once: render them again "
                                 "to watch each one form (a stored picture is replaced only when its new one is done).")
    demo = any(c is not None and c.kind == "trained" for _, c in lineup)
    if demo:
        b1.page_link("pages/setup.py", label="Get the original priors (Setup)", icon=":material/download:",
                     help="The paper's own priors give paper-quality pictures; Setup downloads them (needs "
                          "internet once).")
    with b2:
        runs.stopped_notice("cmpp")
    progress = b2.container()
    # the headers on a row of their own and the pictures on the next: a header that wraps (MACO's) pushes no
    # picture lower than the others
    heads, cols = st.columns(len(slots)), st.columns(len(slots))
    boxes, short = {}, {}
    for head, col, (depth, title, idx) in zip(heads, cols, slots):
        kind = "no prior" if depth in ("pixel", "maco") else "missing" if idx is None else \
            "original" if "original" in title else "demo"
        short[title] = "MACO · no prior" if depth == "maco" else f"{depth} · {kind}"
        head.markdown(f"**{short[title]}**  \n{catalog.prior_depth_words(depth).replace('learned from ', '')}",
                      help=title)
        with col:
            if idx is None:
                st.caption(f"No {depth} prior on this machine.")
                st.page_link("pages/setup.py", label="Get it on the Setup page", icon=":material/download:")
                continue
            boxes[title] = st.empty()

    def show(title: str) -> bool:
        r = state.store().get(dict(requests)[title].identities(state.device())[0].key)
        if r is not None:
            boxes[title].image(str(r.image_path), caption=f"activation {fixed(r.activation_final)}", width="stretch")
        return r is not None

    def forming(title: str, images: list, captions: list) -> None:
        boxes[title].image(images[0], caption=captions[0].split(" · ", 1)[1], width="stretch")

    if adv.problem is None and not (go or again):
        state.warm(req for _, req in requests)  # every column's prior and fast path ready before the click
    if adv.problem is None:
        for title in boxes:  # what is stored already stands in its column from the start
            if not show(title) and (go or again):
                boxes[title].caption("Waiting for its turn…")
        with progress:
            results = runs.render(requests, "cmpp", run=go or again, on_done=show, on_preview=forming,
                                  again=again, compact=True)
    else:
        results = [[None] for _ in requests]
    finals, curves = {}, {}
    for title, res in zip((t for t, _ in requests), results):
        r = res[0]
        if r is None:
            boxes[title].caption("Not rendered yet.")
            continue
        show(title)
        finals[short[title]] = r.activation_final
        curves[short[title]] = r.activations
    if finals:
        c1, c2 = st.columns(2)
        c1.plotly_chart(cards.final_bar_chart(finals, "How strongly the unit fires (not picture quality)"),
                        width="stretch", config=cards.CHART_CONFIG)
        c2.plotly_chart(cards.activation_chart(curves), width="stretch", config=cards.CHART_CONFIG)
        st.caption("How strongly the unit fires with each prior. A higher number is not a better picture: the "
                   "pixel baseline often scores high with a picture of noise. Judge the pictures by eye.")
    if demo:
        st.caption(catalog.demo_caveat(layout.presenting()))
