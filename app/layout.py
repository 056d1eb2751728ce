"""Look and frame of every page: the stylesheet, the sidebar note and friendly error messages."""
from __future__ import annotations

import contextlib
import logging
import runpy
from pathlib import Path

import streamlit as st

from dgnam_engine.errors import UserError

from . import catalog, state

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ENTRYPOINT = ASSETS.parent / "streamlit_app.py"
log = logging.getLogger("dgnam_studio")


def page_header(title: str, intro: str = "") -> None:
    """Every page starts here. A page opened by its URL (/run, a link from a slide) before any session of this
    server called st.navigation is run by Streamlit's legacy pages-folder mode, without streamlit_app.py. Then run
    the entrypoint instead: its st.navigation switches the server over and runs this same page inside the app."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        runpy.run_path(str(ENTRYPOINT))
        st.stop()
    st.title(title)
    if intro:
        st.markdown(intro)


def apply_style() -> None:
    css = (ASSETS / "style.css").read_text()
    st.markdown(f"<style>{css}</style>", unsafe_allow_html=True)


def sidebar() -> None:
    with st.sidebar:
        dev = state.device()
        prior = catalog.default_prior()
        st.caption(f"Running on **{'GPU' if dev.startswith('cuda') else 'CPU'}** · default prior: "
                   f"**{catalog.prior_title(prior)}**")
        st.caption("DGN-AM (Nguyen et al., NIPS 2016) searches a generator's code for the picture that a "
                   "neuron likes most.")


@contextlib.contextmanager
def friendly_errors():
    """No tracebacks for the audience: one line saying what went wrong and what to do."""
    try:
        yield
    except UserError as exc:
        st.error(f"{exc}", icon=":material/error:")
    except Exception:  # Streamlit's own control-flow exceptions are BaseExceptions and pass through
        log.exception("page failed")
        st.error("Something went wrong on this page. Reload the page and try again; if it keeps happening, "
                 "restart the dashboard with `bash run.sh` and check the Setup page.", icon=":material/error:")
