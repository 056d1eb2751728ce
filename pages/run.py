"""Run: one button renders the chosen unit(s), with live progress, a preview and a Stop button. The controls sit on
the left and the pictures (stored, forming, done) on the right, so at 1280x720 both are on the first screen."""
from dataclasses import replace

import streamlit as st

from app import beyond, cards, catalog, layout, runs, state, widgets
from dgnam_engine.runner import Settings
from dgnam_engine.worker import Request

layout.page_header("Render a neuron", "Pick a network and a unit, then press **Render**. The picture shows what "
                   "that unit responds to most.")


def _live(how: str, seed: int | None = None, was: int | None = None) -> None:
    """'again': the same settings rendered live; 'seed': `seed`, the next seed with nothing stored, put in the
    Seed box (in presentation mode, where the box is hidden, kept for these units). The request of this rerun is
    built with it and rendered at once; a Stop puts the seed of the picture that was there, `was`, back."""
    if how == "seed":
        _set_seed(seed)
        st.session_state["run_seed_undo"] = was
    st.session_state["run_live"] = how


def _set_seed(seed: int) -> None:
    if layout.presenting():
        st.session_state["run_seed_present"] = seed
    else:
        st.session_state["run_seed"] = seed


def _stopped() -> None:
    """Stop during a new seed's render: the picture that was there stays, and so does its seed."""
    was = st.session_state.pop("run_seed_undo", None)
    if was is not None:
        _set_seed(was)


controls, stage = st.columns([1.45, 1], gap="medium")
with controls:
    sel = widgets.pick_unit("run", multi=True, stacked=True)
if sel is None:
    st.stop()
with controls:
    # prior, quick preview and the button on one row
    c1, c2, c3 = st.columns([1.7, 1.3, 0.9], vertical_alignment="bottom")
    with c1:
        prior = widgets.pick_prior("run")
    button_slot = c3.empty()  # filled once the settings are checked
    quick = False if layout.presenting() else c2.toggle(
        "Quick preview", key="run_quick", help="A first look in seconds: fewer steps on the fastest path. Its "
        "pictures are marked 'quick preview' and never replace a full run. Turn off for the full run.")
    adv = widgets.advanced("run", sel.model, preview=quick)
    method = catalog.method_of(prior)
    more = beyond.beyond("run", sel.model, sel.layer, method)
# in presentation mode (no Seed box) a seed from "Render live with a new seed" lasts while the same units stay
# picked; otherwise the Seed box holds it, so the box always says the seed of the picture
picked_now = (sel.model, sel.layer, tuple(sel.units))
if st.session_state.get("run_seed_for") != picked_now:
    st.session_state["run_seed_for"] = picked_now
    st.session_state.pop("run_seed_present", None)
seed0 = st.session_state.get("run_seed_present", adv.seed) if layout.presenting() else adv.seed
picked = sel.units[:1] if more.objective else sel.units  # a combination is one picture per seed
units = [u for u in picked for _ in range(adv.n_seeds)]
seeds = [seed0 + k for _ in picked for k in range(adv.n_seeds)]
settings = Settings(method=method, prior=prior if method == "dgnam" else None, n_iters=adv.steps,
                    lr_start=adv.lr, seed=seed0, position=more.position, init_image=more.init_image,
                    objective=more.objective)
problem = adv.problem or more.problem
if quick:
    settings = settings.as_preview()
req = Request(sel.model, units, sel.layer, settings, seeds)


def next_free_seed(req: Request) -> int:
    """The first seed after this one whose pictures are not stored yet: a new seed is always rendered live."""
    for seed in range(seed0 + 1, seed0 + 1000):
        shifted = replace(req, settings=replace(req.settings, seed=seed),
                          seeds=[seed + s - seed0 for s in req.seed_list()])
        if not any(runs.stored_results(shifted)):
            return seed
    return seed0 + 1000
go = button_slot.button("Render", type="primary", key="run_go", icon=":material/play_arrow:",
                        disabled=problem is not None, width="stretch")
live = st.session_state.pop("run_live", None) if problem is None else None
if problem is None and not go and not live:
    state.warm([req])  # the network, prior and fast path ready before the click
before = runs.stored_results(req) if problem is None else []
stored_all = bool(before) and all(before)


def offer_live(results: list, just_now: bool = False) -> None:
    """The offer to render live, in its slot beside the pictures it would replace; `just_now`: they were."""
    where = "the shipped atlas" if any(r.shipped for r in results) else "stored results"
    with offer.container():
        st.caption("Rendered live just now (and stored); render again to watch it once more, or try another seed."
                   if just_now else f"Shown from {where}, so it was instant; render live to watch it form.")
        b1, b2 = st.columns(2)
        b1.button("Render live again", key="run_again", icon=":material/replay:", on_click=_live,
                  args=("again",), width="stretch", help="The same settings once more, with the picture forming "
                  "step by step; it replaces the stored one when it is done (Stop keeps the stored one).")
        nxt = next_free_seed(req)
        b2.button("Render live with a new seed", key="run_newseed", icon=":material/casino:", on_click=_live,
                  args=("seed", nxt, seed0), width="stretch",
                  help=f"Another random start (seed {nxt}, not rendered yet): a new picture of the same unit.")


offer = controls.empty()  # one slot: the offer to render live, or what the live render does
offered = stored_all and not live
if offered:
    offer_live(before)
elif live:
    offer.caption("Rendering live: " + ("the same settings again; the new picture replaces the stored one when "
                                        "it is done." if live == "again" else f"a new seed ({seed0}), a new picture."))

with stage:
    runs.stopped_notice("run")
    progress = st.container()  # the progress bar and Stop above the pictures, which keep their place
    pics = st.empty()
    if problem is None and (go or live):
        def forming(name: str, images: list, captions: list) -> None:
            # one picture: the forming one in the place of the stored one (which stays stored until it is done)
            pics.image(images if len(images) > 1 else images[0], caption=captions if len(images) > 1
                       else captions[0], width=140 if len(images) > 1 else "stretch")

        with progress:  # a new seed renders live even if another tab stored it meanwhile
            [results] = runs.render([(runs.names_of(req), req)], "run", run=True, again=live in ("again", "seed"),
                                    on_preview=forming, on_stop=_stopped if live == "seed" else None)
        st.session_state.pop("run_seed_undo", None)
        if not offered and results and all(results):
            offer_live(results, just_now=True)  # once more, or another seed
    else:
        results = before
    done = [r for r in results if r is not None]
    if done:
        with pics.container():
            if len(done) < len(results):
                st.caption(f"{len(done)} of {len(results)} pictures are ready; press Render for the rest.")
            cols = st.columns(min(len(done), 2 if len(done) <= 4 else 4))
            for i, r in enumerate(done):
                cols[i % len(cols)].image(str(r.image_path), caption=cards.caption(r), width="stretch")
    elif problem is None and not go and not live:
        pics.caption("Not rendered yet with these settings: press **Render** to watch it form.")

if done:
    chart = cards.activation_chart({f"{cards.unit_caption(r)} · seed {r.seed}": r.activations for r in done})
    stage.plotly_chart(chart, width="stretch", config=cards.CHART_CONFIG)
    st.caption(catalog.TERMS["activation"])
    if any(r.prior_kind == "trained" for r in done):
        st.caption(catalog.demo_caveat(layout.presenting()))
    if not layout.presenting():
        with st.expander("Details of each picture"):
            for r in done:
                cards.result_card(r, f"run_card_{r.key}")
