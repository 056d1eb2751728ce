"""Compare models: one ImageNet class rendered for every network whose weights are present, side by side."""
import streamlit as st

from app import cards, catalog, layout, runs, widgets
from app.figures import fixed
from app.plain import plain
from dgnam_engine import numbers
from dgnam_engine.runner import Settings
from dgnam_engine.worker import Request

layout.page_header("Compare models", "How different networks picture the same ImageNet class, with the same "
                   "prior and seed.")

# networks with other classes (scenes, a user's own) have no ImageNet class to compare
models = [m for m in catalog.available_models() if catalog.imagenet_classifier(m)]
link = st.query_params.get("class")  # answered even when there is nothing to compare
if link is not None and widgets.is_new_link({"class": link}):  # ?class=967 opens a class directly
    if numbers.is_whole(link) and int(link) < 1000:
        st.session_state["cmpm_class"] = int(link)
    else:
        st.error(f"The link's class “{plain(link)}” is not an ImageNet class number (0–999)."
                 + (" Pick a class below." if len(models) > 1 else ""))
others = [m for m in catalog.available_models() if m not in models]  # their own classes: scenes, a user's
if len(models) < 2:
    # nothing to compare: say what is there and why, and point at the button that fetches more
    line = "Only one network is on this machine, so there is nothing to compare yet."
    if others:
        only = f"one ImageNet network ({catalog.model_short(models[0])})" if models else "no ImageNet network"
        line = f"There is {only} on this machine, so there is nothing to compare yet."
        names = ", ".join(plain(catalog.model_short(m)) for m in others)
        line += (f" {names} {'has' if len(others) == 1 else 'have'} classes of {'its' if len(others) == 1 else 'their'}"
                 " own, not ImageNet's: this page renders one ImageNet class in every network, so "
                 f"{'it is' if len(others) == 1 else 'they are'} not compared here.")
    st.info(line + " Any class can be rendered on the **Run** page.", icon=":material/info:")
    st.page_link("pages/setup.py", label="Get more networks on the Setup page (needs internet once)",
                 icon=":material/download:")
    st.page_link("pages/run.py", label="Render a class on the Run page", icon=":material/play_circle:")
    st.stop()
shared = st.session_state.get("selection", {})
shared_model = shared.get("model", catalog.DEFAULT_MODEL)
cls_default = shared.get("units", [catalog.DEFAULT_UNIT])[0] if shared.get("layer") == \
    catalog.output_layer(shared_model) and catalog.imagenet_classifier(shared_model) else catalog.DEFAULT_UNIT
if st.session_state.get("cmpm_class") not in range(1000):
    st.session_state["cmpm_class"] = cls_default
cls = st.selectbox("ImageNet class (type to search)", range(1000), key="cmpm_class", format_func=catalog.class_label)
widgets.wrote_link({"class": cls})
prior = widgets.pick_prior("cmpm")
adv = widgets.advanced("cmpm", models[0], seeds_side_by_side=False)
method = catalog.method_of(prior)
requests = []
for m in models:
    s = Settings(method=method, prior=prior if method == "dgnam" else None, n_iters=adv.steps, lr_start=adv.lr,
                 seed=adv.seed)
    requests.append((m, Request(m, [cls], catalog.output_layer(m), s)))
missing = [m for m in catalog.model_names() if m not in models and catalog.imagenet_classifier(m)]
go = st.button("Render for every network", type="primary", key="cmpm_go", icon=":material/play_arrow:",
               disabled=adv.problem is not None)
runs.stopped_notice("cmpm")
results = runs.render(requests, "cmpm", run=go and adv.problem is None)
slots = [(m, res[0]) for (m, _), res in zip(requests, results)]
cols = st.columns(min(len(slots), 5))
for i, (m, r) in enumerate(slots):
    with cols[i % len(cols)]:
        st.markdown(f"**{catalog.model_short(m)}**")
        if r is None:
            st.caption("Not rendered yet.")
        else:
            st.image(str(r.image_path), caption=f"activation {fixed(r.activation_final)}", width="stretch")
if missing:
    st.caption(f"Not on this machine: {', '.join(catalog.model_short(m) for m in missing)}.")
    st.page_link("pages/setup.py", label="Get them on the Setup page", icon=":material/download:")
done = {m: r for m, r in slots if r is not None}
if len(done) > 1:
    st.plotly_chart(cards.final_bar_chart({m: r.activation_final for m, r in done.items()}), width="stretch",
                    config=cards.CHART_CONFIG)
    st.caption(catalog.TERMS["activation"] + " Networks use different scales, so compare the pictures by eye.")
