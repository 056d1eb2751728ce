"""The paper's questions: RQ1 to RQ5 of the DGN-AM paper in plain words, each with its experiment (one button),
its pictures, its numbers with their intervals and sanity cases, and what the paper found. The page and `python -m
dgnam_engine paper --json` are one computation: both read and write the same stored answers (dgnam_engine/paper.py),
so what one computed the other shows. A question whose networks are not here says so, with no tick."""
import json

import streamlit as st

from app import layout, state
from app.plain import message
from dgnam_engine import paper
from dgnam_engine.errors import UserError

layout.page_header("The paper's questions", "What the DGN-AM paper asked, answered on this machine: each question "
                   "has one small experiment, its pictures, its numbers and what the paper found.")

PRESENTING = layout.presenting()
ctx = paper.Context(paper.default_units(paper.page_units()), steps=state.default_steps())
ctx.made = st.session_state.setdefault("paper_made", {})
st.caption(f"Setup: target **{ctx.model}**, prior **{ctx.prior}**, second opinion by **{paper.J.JUDGE_NAME}**, "
           f"{len(ctx.units)} evenly spread classes, seed 0. " + (
               "The demo setup: the paper's own network and priors are not here (Setup downloads them)."
               if ctx.model != "caffenet" else "The paper's own setup (CaffeNet with the fc6 prior)."))
if ctx.model.startswith("efficientnet_lite"):
    st.caption("Note: " + paper.SIBLING_NOTE[0].upper() + paper.SIBLING_NOTE[1:] + ".")

PLAIN = {
    "rq1": ("RQ1 · Does a learned prior give realistic pictures?",
            "An independent network (neither the target nor the prior's encoder) names each picture. How often is "
            "its first (or top-5) guess the intended class, for DGN-AM and for pixel-space AM without a prior (the "
            "2016 baseline and MACO, today's best pixel method)? Each rate has its 95% interval (Wilson)."),
    "rq2": ("RQ2 · Does the prior work for another dataset?",
            "The paper renders scene units of a Places205 network with the ImageNet prior."),
    "rq3": ("RQ3 · Other architectures, and targets far from the prior's encoder",
            "The same classes on every ImageNet network present, each judged by another network."),
    "rq4": ("RQ4 · The neuron's picture or the prior's? A copy of a training photo?",
            "Novelty: distance to the nearest training photo over how far those photos are from each other, in "
            "pixel structure and early features, which the optimisation does not push (near 0 = a copy). "
            "Realism: how far the picture's feature statistics are from a network's training statistics. "
            "Specificity: how far apart different units' pictures are, over how far apart one unit's seeds are."),
    "rq5": ("RQ5 · Many-sided neurons",
            "Facets: the unit's top real photos of its class are clustered and each cluster's mean code starts "
            "one picture. Diversity is the mean distance between the pictures; the same figure for random seeds "
            "(same steps) beside it."),
}


def _pct(rate: float, interval) -> str:
    return f"{rate:.0%} (95% interval {interval[0]:.0%}–{interval[1]:.0%})"


def headline(name: str, n: dict) -> str:
    """The numbers of each question, in words."""
    if n.get("answered") is False:
        return "not answered here"
    if name == "rq1":
        return " · ".join(f"**{k}**: top-1 {_pct(v['top1'], v['top1_interval'])}, top-5 {v['top5']:.0%} "
                          f"({v['n']} units)" for k, v in n["methods"].items() if v.get("judge"))
    if name == "rq2":
        lifts = [f - s for s, f in zip(n["activation_start"], n["activation_final"])]
        return (f"**{n['target']}**: {len(lifts)} scene units, mean activation gain {sum(lifts) / len(lifts):.1f}"
                + (f", novelty {n['novelty_mean']}" if n.get("novelty_mean") is not None else ""))
    if name == "rq3":
        return " · ".join(f"**{t}** (judged by {v['judge']}): top-1 {_pct(v['top1'], v['top1_interval'])}"
                          if v.get("judge") else f"**{t}**: no judge" for t, v in n["targets"].items())
    if name == "rq4":
        nov, spec = n["novelty_dgnam"], n["specificity"]
        words = (f"novelty **{nov['mean']:.2f}** (copies {nov['verdicts']['copy']}, close "
                 f"{nov['verdicts']['close']}, new {nov['verdicts']['new']})" if nov else "novelty: no photos in "
                 "this prior's space")
        return (words + f" · realism distance **{n['realism']['dgnam']:.2f}**" + (
            f" (pixel baseline {n['realism']['pixel']:.2f})" if n["realism"].get("pixel") is not None else "")
            + f" · specificity **{spec['ratio']}** (between units {spec['between_units']:.1f} / within a unit's "
              f"seeds {spec['within_unit_seeds']:.1f})")
    if name == "rq5":
        return " · ".join(f"**{v['label']}**: facets {v['facets_diversity']:.1f} vs seeds {v['seeds_diversity']:.1f}"
                          if v.get("answered") else f"**{v['label']}**: not answered ({v['of_class']} photos of "
                          "its class)" for v in n["units"].values())
    return ""


def sanity(name: str, n: dict) -> None:
    """The cases that pin a measure's meaning, beside it."""
    if name == "rq4" and n.get("sanity"):
        st.caption("Sanity cases · " + " · ".join(
            f"{case}: novelty {v['novelty']:.2f} ({v['verdict']}), realism distance {v['realism_distance']:.2f}"
            for case, v in n["sanity"].items()))
        spec = n["specificity"]
        st.caption(f"The prior alone (random codes, no unit) spreads {spec['prior_alone_spread']:.1f}"
                   + (": it collapses to nearly one picture, so it is no baseline." if spec["prior_alone_collapses"]
                      else "."))
    if name in ("rq1", "rq3") and n.get("judge_note"):
        st.caption("The judge: " + n["judge_note"] + ".")
    if name == "rq3" and n.get("note"):
        st.warning("A weak answer: " + n["note"] + ".", icon=":material/info:")


def guess_the_neuron() -> None:
    """How much a picture explains (issue 31): the machine's two-photo score per condition, people's tallies."""
    from dgnam_engine import quiz_auto

    g = quiz_auto.rq1(state.store().root)

    def rates(conditions: dict) -> str:
        return " · ".join(f"{c}: {v['score']:.0%} ({v['ci95'][0]:.0%}–{v['ci95'][1]:.0%}, {v['questions']} "
                          f"questions)" for c, v in conditions.items() if v.get("questions"))
    if g["machine"]:
        st.caption(f"**Guess the neuron, by machine** ({g['machine']['units']} units; chance 50%, real photos the "
                   f"ceiling): {rates(g['machine']['conditions'])}. The stand-in for a person: "
                   f"{g['machine']['note']}.")
    else:
        st.caption("Guess the neuron, by machine: not computed yet"
                   + ("" if PRESENTING else " (`python -m dgnam_engine quiz auto`)") + ".")
    if g["people"]["answers"]:
        st.caption(f"**Guess the neuron, by people** ({g['people']['people']} people, {g['people']['answers']} "
                   f"answers): {rates(g['people']['conditions'])}.")
    st.page_link("pages/quiz.py", label="Take the quiz: Guess the neuron", icon=":material/psychology_alt:")


def not_answered(n: dict) -> None:
    needs = n.get("needs") or "; ".join(f"{v['label']}: {v['needs']}" for v in n.get("units", {}).values()
                                        if v.get("needs"))
    st.info(f"**Not answered here.** It needs {needs}.", icon=":material/help:")
    if n.get("command") and not PRESENTING:
        st.caption(f"On the command line: `{n['command']}`")
    if "Setup" in needs:
        st.page_link("pages/setup.py", label="Get a scene network on Setup", icon=":material/download:")


def strip(pics) -> None:
    """Every picture of the answer, in rows of six (nothing cut off)."""
    per_row = 6
    for i in range(0, len(pics), per_row):
        cols = st.columns(per_row)
        for col, (caption, path) in zip(cols, pics[i:i + per_row]):
            col.image(str(path), caption=caption, width="stretch")


def estimate_line(name: str) -> str:
    try:
        e = paper.estimate(name, ctx)
    except UserError as exc:
        return message(exc)
    if e["stored"]:
        return "Stored: shown at once, nothing to render."
    if not e["pictures"]:
        return "Nothing to render: the pictures are stored; the numbers take a few seconds."
    minutes = e["seconds"] / 60
    return (f"About {e['pictures']} pictures to render, roughly {max(1, round(minutes))} minute"
            f"{'s' if round(minutes) > 1 else ''} on 2 CPU cores (pictures already stored are reused).")


for name in paper.EXPERIMENTS:
    title, words = PLAIN[name]
    with st.container(border=True, key=f"paper_{name}"):
        st.subheader(title)
        st.markdown(paper.QUESTIONS[name] + " " + words)
        st.caption(estimate_line(name))
        if st.button("Run this experiment", key=f"paper_go_{name}", icon=":material/science:"):
            with st.status(f"Running {name.upper()}…", expanded=True) as status:
                ctx.progress = status.write
                try:
                    numbers, _, reused = paper.answer(name, ctx)
                except UserError as exc:
                    status.update(label=f"{name.upper()} could not run", state="error")
                    st.error(message(exc))
                    numbers = None
                if numbers is not None:
                    if numbers.get("answered") is False:  # no tick: nothing was answered
                        status.update(label=f"{name.upper()}: not answered here", state="error", expanded=False)
                    else:
                        status.update(label=f"{name.upper()} done" + (" (stored)" if reused else ""),
                                      state="complete", expanded=False)
        last = paper.load(name)
        if last is None:
            st.caption("Not run yet on this machine.")
        else:
            n = last["numbers"]
            if n.get("answered") is False:
                not_answered(n)
            else:
                st.markdown("**Number:** " + headline(name, n))
                sanity(name, n)
                if n.get("needs"):  # answered in part (RQ5: one unit of two)
                    not_answered(n)
            if last["pictures"]:
                strip(last["pictures"])
            if not PRESENTING:
                with st.expander("All numbers"):
                    st.code(json.dumps(n, indent=1), language="json")
        if name == "rq1":
            guess_the_neuron()
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
