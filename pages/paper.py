"""The paper's questions: RQ1 to RQ5 of the DGN-AM paper in plain words, each with its experiment (one button),
its pictures, its number and what the paper found. The numbers are the same as `python -m dgnam_engine paper
--json`; the last run of each experiment (from here or the command line) is shown when the page opens."""
import json

import streamlit as st

from app import layout, state
from app.plain import message
from dgnam_engine import paper
from dgnam_engine.errors import UserError

layout.page_header("The paper's questions", "What the DGN-AM paper asked, answered on this machine: each question "
                   "has one small experiment, its pictures, its number and what the paper found.")

ctx = paper.Context(paper.default_units(8), steps=state.default_steps())
ctx.made = st.session_state.setdefault("paper_made", {})
st.caption(f"Setup: target **{ctx.model}**, prior **{ctx.prior}**, second opinion by **efficientnet_lite2**, "
           f"{len(ctx.units)} evenly spread classes. " + (
               "The demo setup: the paper's own network and priors are not here (Setup downloads them)."
               if ctx.model != "caffenet" else "The paper's own setup (CaffeNet with the fc6 prior)."))

PLAIN = {
    "rq1": ("RQ1 · Does a learned prior give realistic pictures?",
            "An independent network (neither the target nor the prior's encoder) names each picture. How often is "
            "its first (or top-5) guess the intended class, for DGN-AM and for pixel-space AM without a prior (the "
            "2016 baseline and MACO, today's best pixel method)?"),
    "rq2": ("RQ2 · Does the prior work for another dataset?",
            "The paper renders scene units of a Places205 network with the ImageNet prior."),
    "rq3": ("RQ3 · Other architectures, and targets far from the prior's encoder",
            "The same classes on every target network present, judged the same way."),
    "rq4": ("RQ4 · The neuron's picture or the prior's? A copy of a training photo?",
            "Novelty: distance to the nearest training photo over how far those photos are from each other (near 0 "
            "= a copy). Specificity: how far apart the pictures of different units are, over how far apart the "
            "prior's own pictures from random codes are (what it draws by itself; above 1 = the units differ)."),
    "rq5": ("RQ5 · Many-sided neurons",
            "Facets: the unit's top real photos are clustered and each cluster's mean code starts one picture. "
            "Diversity is the mean distance between the pictures; the same figure for random seeds beside it."),
}


def headline(name: str, n: dict) -> str:
    """The one number of each question, in words."""
    if name == "rq1":
        m = n["methods"]
        return " · ".join(f"**{k}**: top-1 {v['top1']:.0%}, top-5 {v['top5']:.0%}" for k, v in m.items()
                          if v.get("judge")) or "no judge for this target"
    if name == "rq2":
        if not n.get("ran"):
            return f"not run: {n['reason']}"
        lifts = [f - s for s, f in zip(n["activation_start"], n["activation_final"])]
        return (f"**{n['target']}**: {len(lifts)} scene units, mean activation gain {sum(lifts) / len(lifts):.1f}"
                + (f", novelty {n['novelty_mean']}" if n.get("novelty_mean") is not None else ""))
    if name == "rq3":
        return " · ".join(f"**{t}**: top-1 {v['top1']:.0%}, novelty {v['novelty_mean']}" if v.get("judge") else
                          f"**{t}**: no judge" for t, v in n["targets"].items())
    if name == "rq4":
        nov = n["novelty_dgnam"]
        return (f"novelty **{nov['mean']:.2f}** (mean, min {nov['min']:.2f})" if nov else "novelty: no photos "
                "in this prior's space") + f" · specificity **{n['specificity']['ratio']}**"
    if name == "rq5":
        return " · ".join(f"**{v['label']}**: facets {v['facets_diversity']:.1f} vs seeds {v['seeds_diversity']:.1f}"
                          for v in n["units"].values())
    return ""


for name, fn in paper.EXPERIMENTS.items():
    title, words = PLAIN[name]
    with st.container(border=True, key=f"paper_{name}"):
        st.subheader(title)
        st.markdown(paper.QUESTIONS[name] + " " + words)
        if st.button("Run this experiment", key=f"paper_go_{name}", icon=":material/science:"):
            with st.status(f"Running {name.upper()}…", expanded=True) as status:
                ctx.progress = status.write
                try:
                    numbers, pics = fn(ctx)
                except UserError as exc:
                    status.update(label=f"{name.upper()} could not run", state="error")
                    st.error(message(exc))
                    numbers = None
                if numbers is not None:
                    paper.save(name, numbers, pics)
                    status.update(label=f"{name.upper()} done", state="complete", expanded=False)
        last = paper.load(name)
        if last is None:
            st.caption("Not run yet on this machine.")
        else:
            st.markdown("**Number:** " + headline(name, last["numbers"]))
            pics = last["pictures"][:10]
            if pics:
                cols = st.columns(len(pics))
                for col, (caption, path) in zip(cols, pics):
                    col.image(str(path), caption=caption, width="stretch")
            with st.expander("All numbers"):
                st.code(json.dumps(last["numbers"], indent=1), language="json")
        st.caption("**What the paper found:** " + paper.PAPER_FOUND[name])

# The paper's own runs: its five scripts, each one button, on the closest setup present.
with st.container(border=True, key="paper_recipes"):
    from dgnam_engine import recipes as R

    st.subheader("The paper's own runs")
    st.markdown("The original code ships five scripts. Each runs here with one button; where the paper's network "
                "or prior is missing, on the closest setup present, and the line under it says what differs.")
    name = st.selectbox("Run", list(R.BY_NAME), format_func=lambda n: f"{R.BY_NAME[n].script} · "
                        f"{R.BY_NAME[n].title}", key="paper_recipe")
    st.caption(R.plan(name, materialise=False).note())
    if st.button("Run this recipe", key="paper_recipe_go", icon=":material/play_arrow:"):
        from dgnam_engine.runner import Settings, visualize

        with st.spinner("Rendering the recipe's units…"):
            try:
                p = R.plan(name)
                s = Settings(prior=p.prior, n_iters=state.default_steps() or p.iters, lr_start=p.lr,
                             position=p.xy, init_image=p.photo)
                st.session_state["paper_recipe_done"] = (name, p.note(), [
                    (f"{r.label} · {r.activation_final:.1f}", r.image)
                    for r in visualize(p.model, p.units, p.layer, s, device=state.device())])
            except UserError as exc:
                st.error(message(exc))
    done = st.session_state.get("paper_recipe_done")
    if done and done[0] == name:
        cols = st.columns(len(done[2]))
        for col, (caption, image) in zip(cols, done[2]):
            col.image(image, caption=caption, width="stretch")
        st.caption(done[1])
