"""Rendering from a page: reuse stored results, queue the rest on the device's worker, and show the progress
(bar, live preview, queue position, Stop button) until every run ended.

The page script waits for its runs. Stop cancels them in its callback, which runs first thing in the rerun that
the click starts. Any other click makes Streamlit interrupt the waiting script, whose `finally` then cancels its
runs. The worker stores nothing of a cancelled run.
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import streamlit as st

from dgnam_engine.store import StoredResult
from dgnam_engine import accel
from dgnam_engine.worker import DONE, FAILED, Job, Request

from . import catalog, state
from .figures import fixed
from .plain import message, plain

PREVIEW_EVERY = 5  # steps between preview images
POLL_S = 0.2


def is_preview(r: StoredResult) -> bool:
    """A quick-preview result: a first look, never a unit's best picture. Results stored before previews were
    marked count as previews when they are no longer than one."""
    if "preview" in r.settings:
        return bool(r.settings["preview"])
    return (r.settings.get("n_iters") or 0) <= accel.PREVIEW_ITERS


def is_variant(r: StoredResult) -> bool:
    """Started from a photo, at a position other than the centre, or a combination of units: a picture of what
    the unit adds or of a mix, not the unit's own preferred picture."""
    return bool(r.settings.get("init_image") or r.settings.get("objective") or r.settings.get("position"))


ODD_LR = (1e-5, 1e3)  # the learning rate a run used (scaled to its prior); outside this it was a test of the method


def variant_words(r: StoredResult) -> str:
    """What a variant is, in a few words ("from a photo (coffee.png)", "at position 2,5", "combination bee + ...");
    empty for a unit's own picture. Every caption, card, Gallery entry and file name says it."""
    s = r.settings
    parts = []
    if s.get("objective"):
        parts.append(f"combination {s['objective']}")
    if s.get("init_image"):
        parts.append(f"from a photo ({Path(str(s['init_image'])).name})")
    if s.get("position"):
        row, col = s["position"]
        parts.append(f"at position {row},{col}")
    return " · ".join(parts)


def has_odd_settings(r: StoredResult) -> bool:
    """A run with a learning rate far from any default (noise, or a frozen picture): never a unit's best."""
    lr = r.settings.get("lr_start")
    return lr is not None and not ODD_LR[0] <= lr <= ODD_LR[1]


def is_default_version(r: StoredResult) -> bool:
    """The unit's own picture as anyone gets it by default: the default prior, seed 0, the model's own number of
    steps (the shipped atlas is made this way)."""
    from dgnam_engine import targets as T

    return r.shipped or (r.prior == catalog.default_prior() and r.seed == 0
                         and r.settings.get("n_iters") == T.get_spec(r.model).n_iters)


def best_first(results: Sequence[StoredResult]) -> list[StoredResult]:
    """The one rule for which stored result represents a unit (grid thumbnails, the big picture, the versions
    list): a full run of the unit itself (no variant) with a prior, then the default-settings picture (the shipped
    atlas first: one visitor's other renders never replace it for everyone), then the paper's original priors
    before demo priors, then the longest, then the newest."""
    return sorted(results, key=lambda r: (is_preview(r), is_variant(r), r.prior in catalog.NO_GENERATOR,
                                          has_odd_settings(r), not is_default_version(r), not r.shipped,
                                          r.prior_kind != "original", -(r.settings.get("n_iters") or 0),
                                          -r.created))


def best_per_unit(results: Sequence[StoredResult]) -> list[StoredResult]:
    """One result per (model, layer, unit), chosen by best_first, in order of each unit's newest result."""
    groups: dict[tuple, list[StoredResult]] = {}
    for r in sorted(results, key=lambda r: -r.created):
        groups.setdefault((r.model, r.layer, r.unit), []).append(r)
    return [best_first(g)[0] for g in groups.values()]


def version_label(r: StoredResult) -> str:
    """How a version is named in lists: what kind of run it was, in words."""
    kind = "quick preview" if is_preview(r) else "full run"
    lr = f" · learning rate {r.settings['lr_start']:g}" if has_odd_settings(r) else ""
    prior = "pixel baseline" if r.prior == catalog.PIXEL else "MACO" if r.prior == catalog.MACO else f"{r.prior} prior"
    made = time.strftime("%d %b %H:%M", time.localtime(r.created))  # two otherwise alike versions differ here
    what = variant_words(r)
    made = "shipped atlas" if r.shipped else f"made {made}"
    return (f"{kind}{' · ' + what if what else ''} · {prior} · seed {r.seed} · {r.settings.get('n_iters')} steps"
            f"{lr} · {made}")


def stored_results(req: Request) -> list[Optional[StoredResult]]:
    """What the store already holds for each (unit, seed) of a request, in order."""
    store = state.store()
    return [store.get(i.key) for i in req.identities(state.device())]


def _missing_part(req: Request) -> Optional[Request]:
    have = stored_results(req)
    pairs = [(u, s) for (u, s), h in zip(zip(req.units, req.seed_list()), have) if h is None]
    if not pairs:
        return None
    return replace(req, units=[u for u, _ in pairs], seeds=[s for _, s in pairs])


def _progress_text(jobs: list[tuple[str, Job]], dev: str) -> tuple[float, str]:
    steps = [j.n_iters or 1 for _, j in jobs]  # the worker resolved each job's steps when it was submitted
    total = sum(steps)
    done = sum(n if j.done else j.step for n, (_, j) in zip(steps, jobs))
    frac = min(1.0, done / max(total, 1))
    live = next(((n, j) for n, j in jobs if not j.done), None)
    if live is None:
        return 1.0, "finished"
    name, job = live
    if len(jobs) > 1:  # the bar is over all of them: say which one the step count is of
        name = f"{name}, run {[j for _, j in jobs].index(job) + 1} of {len(jobs)}"
    if job.state == "queued":
        ahead = state.worker().position(job) or 0
        others = ahead - sum(1 for _, j in jobs if j.state == "running")
        if others > 0:
            return frac, (f"Waiting for the {dev}: {others} run{'s' if others > 1 else ''} from another tab or "
                          "user ahead of yours…")
        return frac, f"{plain(name)}: starting…"  # names may come from a user's class file: as written
    acts = job.curves[0][-1] if job.curves and job.curves[0] else None
    act = f" · activation {fixed(acts, 2)}" if acts is not None else ""
    return frac, f"{plain(name)}: step {job.step}/{job.n_iters or '…'}{act}"


def _stop(key: str, then: Optional[Callable[[], None]] = None) -> None:
    if then is not None:  # the page's own part (before the widgets of the rerun are drawn)
        then()
    jobs = st.session_state.pop(f"{key}_jobs", [])
    for _, job in jobs:
        job.cancel()
    # what finished before the click is stored and stays: say so, by name
    st.session_state[f"{key}_stopped"] = [name for name, job in jobs if job.state == DONE]


def _preview_captions(job: Job) -> list[str]:
    req = job.request
    names = [catalog.markdown_name(catalog.unit_name(req.model, req.layer, u), req.model) for u in req.units]
    return [f"{name} · preview · step {job.step}" for name in names[:len(job.preview[:4])]]


PreviewSink = Callable[[str, list, list], None]  # (job name, preview images, their captions)


def watch(jobs: list[tuple[str, Job]], key: str, on_done: Optional[Callable[[str], None]] = None,
          on_preview: Optional[PreviewSink] = None, compact: bool = False,
          on_stop: Optional[Callable[[], None]] = None) -> None:
    """Show progress until every job ended; cancels them all if the page is interrupted. `on_done(name)` runs
    as soon as a job finished, so a page can show that part while the rest still renders. `on_preview` draws the
    forming pictures where the page wants them (beside the controls, in their column); without it they appear
    under the progress bar. `compact`: Stop and one progress bar on a row, no panel, so nothing below moves.
    `on_stop()` runs in the Stop button's callback."""
    dev = "GPU" if state.device().startswith("cuda") else "CPU"
    mine = st.session_state[f"{key}_jobs"] = list(jobs)
    if compact:
        stop_col, bar_col = st.columns([1, 3.5], vertical_alignment="center")
        stop, panel = stop_col.empty(), bar_col.container()
    else:
        stop, panel = st.empty(), None
    stop.button("Stop", key=f"{key}_stop", icon=":material/stop_circle:", on_click=_stop, args=(key, on_stop),
                help="Stops the run: what has finished is kept, the unfinished part is not saved.")
    reported: set[int] = set()
    finished = False
    try:
        with (panel if compact else st.status("Rendering…", expanded=True)) as status:
            bar = st.progress(0.0, text="queued")
            preview = st.empty() if on_preview is None else None
            shown = None
            while True:
                frac, text = _progress_text(jobs, dev)
                bar.progress(frac, text=text)
                live = next(((n, j) for n, j in jobs if j.state == "running"), None)
                if live is not None and live[1].preview is not None and (live[1].id, live[1].step) != shown:
                    name, job = live
                    shown = (job.id, job.step)
                    if on_preview is not None:
                        on_preview(name, job.preview[:4], _preview_captions(job))
                    else:
                        preview.image(job.preview[:4], width=180, caption=_preview_captions(job))
                for i, (name, j) in enumerate(jobs):
                    if on_done is not None and j.state == DONE and i not in reported:
                        reported.add(i)
                        on_done(name)
                if all(j.done for _, j in jobs):
                    break
                time.sleep(POLL_S)
            if preview is not None:
                preview.empty()
            stop.empty()
            failed = [j for _, j in jobs if j.state == FAILED]
            if compact:
                bar.progress(1.0, text="Could not render" if failed else "Done")
            else:
                status.update(label="Could not render" if failed else "Done",
                              state="error" if failed else "complete", expanded=bool(failed))
            for j in failed:
                st.error(message(f"{j.error[:1].upper()}{j.error[1:]}."))
        finished = True
    finally:
        if not finished:
            for _, j in jobs:
                j.cancel()
        if st.session_state.get(f"{key}_jobs") is mine:  # a newer run of this page may have put its own
            del st.session_state[f"{key}_jobs"]


def stopped_notice(key: str) -> None:
    kept = st.session_state.pop(f"{key}_stopped", None)
    if kept is None:
        return
    if kept:
        st.info(f"Stopped. Kept what had finished: {plain(', '.join(kept))}. The unfinished part was not saved.")
    else:
        st.info("Stopped before anything finished: nothing of that run was saved.")


def render(requests: Sequence[tuple[str, Request]], key: str, run: bool,
           on_done: Optional[Callable[[str], None]] = None, again: bool = False,
           on_preview: Optional[PreviewSink] = None, compact: bool = False,
           on_stop: Optional[Callable[[], None]] = None) -> list[list[Optional[StoredResult]]]:
    """Stored results for every request; with `run`, renders the missing ones first (with progress). With `again`
    every request is rendered live even when stored (to watch it form); the new picture replaces the stored one
    under the same key only once it is done."""
    if run:
        todo = [(name, req if again else _missing_part(req)) for name, req in requests]
        todo = [(name, part) for name, part in todo if part is not None]
        if todo:
            w, store = state.worker(), state.store()
            watch([(name, w.submit(part, store, PREVIEW_EVERY)) for name, part in todo], key, on_done, on_preview,
                  compact, on_stop)
    return [stored_results(req) for _, req in requests]


def names_of(req: Request) -> str:
    """The units of a request in words, for the progress line ("goldfish (1), bee (309)")."""
    names = list(dict.fromkeys(catalog.unit_name(req.model, req.layer or catalog.output_layer(req.model), u)
                               for u in req.units))
    return ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
