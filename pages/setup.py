"""Setup: the device in use, which weights are present or missing, and Download buttons for the missing ones
(the files go into the standard caches; every page finds them on its next rerun, no restart)."""
import time

import streamlit as st

from app import catalog, downloads, layout, state
from app.paths import from_home, shown, shown_in
from app.plain import plain
from dgnam_engine import catalog as C

layout.page_header("Setup", "What this machine has: the device, and which weights are present, missing or "
                            "downloadable from here.")

dev = state.device()
if dev.startswith("cuda"):
    st.success(f"Rendering on the GPU: {state.device_name()}.", icon=":material/memory:")
else:
    st.info("Rendering on the CPU (no GPU found). A 200-step run takes a few seconds to a minute per picture.",
            icon=":material/memory:")
store_problem = state.store_problem()  # the page opens whatever is wrong with the results folder
if store_problem is None:
    # the data folder as plain text (it wraps, a code span did not); the paths below are named from it
    st.caption(f"Results are saved in the data folder, {plain(from_home(state.store().root))} (set "
               "`DGNAM_DATA_DIR` to use another folder).")
else:
    st.error(store_problem, icon=":material/error:")


dl = downloads.downloader()
online = C.downloads_allowed()
networks, priors = C.networks(), C.priors()  # the one catalogue, read once per rerun
missing_nets = [e.name for e in networks if e.fetch]
missing_priors = [e.name for e in priors if e.fetch]


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
    paper = [n for n in downloads.PAPER_SETUP if n in missing_nets + missing_priors]
    if paper:
        known = [downloads.known_size(n) for n in paper]  # the catalogue's sizes: no request before a click
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
        b.caption(downloads.size_label(name))
        c.button("Download", key=f"dl_{name}", icon=":material/download:", disabled=busy or not online,
                 on_click=dl.start, args=([name],))


st.subheader("Networks")
rows = []
for e in networks:
    rows.append({"network": e.name, "weights": "present" if e.available else "missing",
                 "get it with": catalog.fetch_command(e.fetch) if e.fetch else "",
                 "description": e.title, "file": shown_in(e.place)})
st.table(rows, border="horizontal", hide_index=True)  # wraps long paths: nothing cut at the right edge
_download_buttons(missing_nets)

notice = st.session_state.pop("setup_notice", None)  # what the last file form did (the page reran since)
if notice:
    st.success(notice, icon=":material/check_circle:")


def _use_file_form() -> None:
    """A network's weights from a file already on this machine (the Places servers are often down): checked,
    then copied where every page finds it; the user's file is left as it is."""
    takes = [e.name for e in networks if e.spec.weights is not None and e.spec.weights.package_path is None]
    with st.expander("Use a file I have", icon=":material/folder_open:"):
        with st.form("setup_from_file"):
            name = st.selectbox("Network", takes, key="setup_file_net")
            path = st.text_input("Weights file on this machine (full path)", key="setup_file_path",
                                 placeholder="/home/me/Downloads/resnet18_places365.pth.tar")
            go = st.form_submit_button("Check and use this file", icon=":material/upload_file:")
        if go:
            from dgnam_engine import network_files
            from dgnam_engine.errors import UserError

            try:
                dest = network_files.place(name, path.strip())
            except UserError as exc:
                st.error(str(exc), icon=":material/error:")
                return
            st.session_state["setup_notice"] = (f"{name} now uses a copy of your file ({plain(shown(dest))}); your "
                                                "file was left as it is.")
            st.rerun()


def _add_network_form() -> None:
    """A network of the user's own (`models add`): an architecture, a weights file, optional class names."""
    with st.expander("Add your own network", icon=":material/add_circle:"):
        with st.form("setup_add_net"):
            name = st.text_input("Name", key="setup_add_name", placeholder="pets")
            arch = st.text_input("Architecture", key="setup_add_arch", placeholder="torchvision:resnet18",
                                 help="torchvision:<name>, timm:<name>, or caffenet")
            weights = st.text_input("Weights file (full path)", key="setup_add_weights")
            classes = st.text_input("Class names file, one per line (optional)", key="setup_add_classes")
            go = st.form_submit_button("Check and add", icon=":material/add:")
        if go:
            from dgnam_engine import network_files
            from dgnam_engine.errors import UserError

            try:
                e = network_files.add(name.strip(), arch.strip(), weights.strip(), classes=classes.strip() or None)
            except UserError as exc:
                st.error(str(exc), icon=":material/error:")
                return
            st.session_state["setup_notice"] = (f"Added {e.name} ({e.arch}, {e.num_classes} classes): pick it on "
                                                "Run. Your files were copied, not moved.")
            st.rerun()


_use_file_form()
_add_network_form()

st.subheader("Priors")
rows = []
for e in priors:  # in depth order, conv3 to fc7
    rows.append({"prior": e.name, "weights": "damaged" if e.damaged else "present" if e.available else "missing",
                 "get it with": catalog.fetch_command(e.fetch) if e.fetch else "",
                 "plays": e.depth or "",
                 "kind": "demo (trained here)" if e.prior_kind == "trained" else "original (paper)",
                 "description": e.title, "file": shown_in(e.place)})
st.table(rows, border="horizontal", hide_index=True)  # wraps long paths: nothing cut at the right edge
for e in priors:
    if e.damaged:
        st.error(e.damaged, icon=":material/error:")
for line in C.skipped_priors():
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
