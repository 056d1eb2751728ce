"""Setup: the device in use, which weights are present or missing, and Download buttons for the missing ones
(the files go into the standard caches; every page finds them on its next rerun, no restart)."""
import time

import streamlit as st
import torch

from app import catalog, downloads, layout, state
from dgnam_engine import priors as P
from dgnam_engine import targets as T
from dgnam_engine import weights as W

layout.page_header("Setup", "What this machine has: the device, and which weights are present, missing or "
                            "downloadable from here.")

dev = state.device()
if dev.startswith("cuda"):
    st.success(f"Rendering on the GPU: {torch.cuda.get_device_name(torch.device(dev))}.", icon=":material/memory:")
else:
    st.info("Rendering on the CPU (no GPU found). A 200-step run takes a few seconds to a minute per picture.",
            icon=":material/memory:")
store_problem = state.store_problem()  # the page opens whatever is wrong with the results folder
if store_problem is None:
    st.caption(f"Results are saved in `{state.store().root}` (set `DGNAM_DATA_DIR` to use another folder).")
else:
    st.error(store_problem, icon=":material/error:")


def where(wf) -> str:
    found = W.find(wf)
    if found is not None:
        return str(found)
    if wf.hf_repo:
        return f"{W.checkpoints_dir() / wf.filename} (or the Hugging Face cache)"
    return str(W.checkpoints_dir() / wf.filename)


dl = downloads.downloader()
online = W.downloads_allowed()
missing_nets = [n for n in T.TARGETS if not downloads.is_present(n)]
missing_priors = [n for n in P.ORIGINAL_PRIORS if not downloads.is_present(n)]
sizes = dl.sizes(missing_nets + missing_priors) if online else {}


def _download_area() -> None:
    """Start buttons, or the progress of the running download with its Cancel; ends with a rerun when done."""
    status = dl.status()
    if status.active:
        st.button("Cancel", key="dl_cancel", icon=":material/cancel:", on_click=dl.cancel,
                  help="Stops the download; nothing of the unfinished file is kept.")
        bar = st.progress(0.0, text="starting…")
        while status.active:
            frac, text = downloads.progress_text(status)
            bar.progress(frac, text=text)
            time.sleep(0.3)
            status = dl.status()
        st.rerun()  # redraw the tables (and every picker) with the new files
    if status.error:
        st.error(status.error[:1].upper() + status.error[1:], icon=":material/error:")
    elif status.cancelled:
        st.info("Download cancelled: nothing of the unfinished file was kept.", icon=":material/cancel:")
    if status.finished:
        st.success("Downloaded: " + ", ".join(status.finished) + ". Every page can use them now.",
                   icon=":material/download_done:")


st.subheader("Downloads")
if not online:
    st.info("Offline: downloads are off because the dashboard was started with HF_HUB_OFFLINE=1; start it with "
            "`HF_HUB_OFFLINE=0 bash run.sh` to download from here.", icon=":material/cloud_off:")
else:
    if dl.server_unreachable():
        st.warning("The download servers did not answer a size request within 5 s (no network, or the server is "
                   "down): downloads will most likely fail until they do.",
                   icon=":material/cloud_off:")
    paper = [n for n in downloads.PAPER_SETUP if n in missing_nets + missing_priors]
    if paper:
        known = [sizes.get(n) or downloads.KNOWN_SIZES.get(n) for n in paper]
        size = f"{sum(k for k in known if k) / 1e6:.0f} MB" + ("" if all(known) else " and more")
        st.button(f"Paper setup: download {', '.join(paper)} ({size})", key="dl_paper", type="primary",
                  icon=":material/download:", disabled=dl.status().active, on_click=dl.start, args=(paper,),
                  help="CaffeNet and the four original priors: the paper's own setup, for paper-quality pictures.")
    else:
        st.caption("The paper's setup (CaffeNet and the four original priors) is complete.")
progress_area = st.container()  # filled last: while a download runs, the page waits there


def _download_buttons(names) -> None:
    """One row per missing file: its name, its size and a Download button."""
    busy = dl.status().active
    for name in names:
        a, b, c = st.columns([2, 1, 1], vertical_alignment="center")
        a.markdown(f"**{name}** · missing")
        b.caption(downloads.size_label(name, sizes))
        c.button("Download", key=f"dl_{name}", icon=":material/download:", disabled=busy or not online,
                 on_click=dl.start, args=([name],))


st.subheader("Networks")
rows = []
for name, spec in T.TARGETS.items():
    ok = T.weights_available(spec)
    rows.append({"network": name, "weights": "present" if ok else "missing",
                 "get it with": "" if ok or not spec.weights.fetchable else catalog.fetch_command(name),
                 "description": spec.title, "file": where(spec.weights) if spec.weights else "built in"})
st.table(rows, border="horizontal", hide_index=True)  # wraps long paths: nothing cut at the right edge
_download_buttons(missing_nets)

st.subheader("Priors")
rows = []
for name, spec in sorted(P.all_specs().items(), key=catalog.by_depth):
    ok = P.is_available(spec)
    rows.append({"prior": name, "weights": "damaged" if spec.damaged else "present" if ok else "missing",
                 "get it with": "" if ok or spec.kind != "original" else catalog.fetch_command(name),
                 "plays": spec.depth or "",
                 "kind": "demo (trained here)" if spec.kind == "trained" else "original (paper)",
                 "description": spec.title, "file": spec.file if spec.file else where(spec.weights)})
st.table(rows, border="horizontal", hide_index=True)  # wraps long paths: nothing cut at the right edge
for spec in P.all_specs().values():
    if spec.damaged:
        st.error(P.damage_message(spec), icon=":material/error:")
for line in P.skipped_priors():
    st.warning(line, icon=":material/warning:")
_download_buttons(missing_priors)
missing = [r["get it with"] for r in rows if r["get it with"]]
if missing:
    st.markdown("Or from a terminal, every missing original prior at once (needs internet once; the files go into "
                "the folders above and are found automatically):")
    st.code(".venv/bin/python -m dgnam_engine fetch " + " ".join(c.split()[-1] for c in missing), language="bash")
if not catalog.available_priors():  # here the buttons above are the way, not "the Setup page"
    st.warning("No generator prior is installed, so DGN-AM cannot run yet: download fc6 above (needs internet "
               "once); until then the pixel-space baseline works.")
st.info(catalog.DEMO_CAVEAT_SHORT + " Download them with the buttons above (needs internet once).",
        icon=":material/info:")
if online:
    with progress_area:
        _download_area()
