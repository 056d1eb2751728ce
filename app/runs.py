"""Rendering from a page: reuse stored results, queue the rest on the device's worker, and show the progress
(bar, live preview, queue position, Stop button) until every run ended.

The page script waits for its runs. Stop cancels them in its callback, which runs first thing in the rerun that
the click starts. Any other click makes Streamlit interrupt the waiting script, whose `finally` then cancels its
runs. The worker stores nothing of a cancelled run.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Optional, Sequence

import streamlit as st

from dgnam_engine.store import StoredResult
from dgnam_engine.worker import FAILED, Job, Request

from . import state

PREVIEW_EVERY = 5  # steps between preview images
POLL_S = 0.2


def stored_results(req: Request) -> list[Optional[StoredResult]]:
    """What the store already holds for each (unit, seed) of a request, in order."""
    store = state.store()
    return [store.get(i.key) for i in req.identities()]


def _missing_part(req: Request) -> Optional[Request]:
    have = stored_results(req)
    pairs = [(u, s) for (u, s), h in zip(zip(req.units, req.seed_list()), have) if h is None]
    if not pairs:
        return None
    return replace(req, units=[u for u, _ in pairs], seeds=[s for _, s in pairs])


def _progress_text(jobs: list[tuple[str, Job]], dev: str) -> tuple[float, str]:
    steps = [j.n_iters or j.request.settings.n_iters or 200 for _, j in jobs]
    total = sum(steps)
    done = sum(n if j.done else j.step for n, (_, j) in zip(steps, jobs))
    frac = min(1.0, done / max(total, 1))
    live = next(((n, j) for n, j in jobs if not j.done), None)
    if live is None:
        return 1.0, "finished"
    name, job = live
    if job.state == "queued":
        ahead = state.worker().position(job) or 0
        others = ahead - sum(1 for _, j in jobs if j.state == "running")
        if others > 0:
            return frac, (f"Waiting for the {dev}: {others} run{'s' if others > 1 else ''} from other sessions "
                          "ahead of yours…")
        return frac, f"{name}: starting…"
    acts = job.curves[0][-1] if job.curves and job.curves[0] else None
    act = f" · activation {acts:.2f}" if acts is not None else ""
    return frac, f"{name}: step {job.step}/{job.n_iters or '…'}{act}"


def _stop(key: str) -> None:
    for job in st.session_state.pop(f"{key}_jobs", []):
        job.cancel()
    st.session_state[f"{key}_stopped"] = True


def watch(jobs: list[tuple[str, Job]], key: str) -> None:
    """Show progress until every job ended; cancels them all if the page is interrupted."""
    dev = "GPU" if state.device().startswith("cuda") else "CPU"
    mine = st.session_state[f"{key}_jobs"] = [j for _, j in jobs]
    stop = st.empty()
    stop.button("Stop", key=f"{key}_stop", icon=":material/stop_circle:", on_click=_stop, args=(key,),
                help="Stops the run; nothing of it is saved.")
    finished = False
    try:
        with st.status("Rendering…", expanded=True) as status:
            bar = st.progress(0.0, text="queued")
            preview = st.empty()
            shown = None
            while True:
                frac, text = _progress_text(jobs, dev)
                bar.progress(frac, text=text)
                live = next((j for _, j in jobs if j.state == "running"), None)
                if live is not None and live.preview is not None and (live.id, live.step) != shown:
                    shown = (live.id, live.step)
                    preview.image(live.preview[:4], width=180,
                                  caption=[f"preview · step {live.step}"] * len(live.preview[:4]))
                if all(j.done for _, j in jobs):
                    break
                time.sleep(POLL_S)
            preview.empty()
            stop.empty()
            failed = [j for _, j in jobs if j.state == FAILED]
            status.update(label="Could not render" if failed else "Done",
                          state="error" if failed else "complete", expanded=bool(failed))
            for j in failed:
                st.error(f"{j.error[:1].upper()}{j.error[1:]}.")
        finished = True
    finally:
        if not finished:
            for _, j in jobs:
                j.cancel()
        if st.session_state.get(f"{key}_jobs") is mine:  # a newer run of this page may have put its own
            del st.session_state[f"{key}_jobs"]


def stopped_notice(key: str) -> None:
    if st.session_state.pop(f"{key}_stopped", False):
        st.info("Stopped. Nothing of that run was saved.")


def render(requests: Sequence[tuple[str, Request]], key: str, run: bool) -> list[list[Optional[StoredResult]]]:
    """Stored results for every request; with `run`, renders the missing ones first (with progress)."""
    if run:
        todo = [(name, _missing_part(req)) for name, req in requests]
        todo = [(name, part) for name, part in todo if part is not None]
        if todo:
            w, store = state.worker(), state.store()
            watch([(name, w.submit(part, store, PREVIEW_EVERY)) for name, part in todo], key)
    return [stored_results(req) for _, req in requests]

