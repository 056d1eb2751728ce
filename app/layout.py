"""Look and frame of every page: the stylesheet, the sidebar note and friendly error messages. Loads nothing of
the engine itself: a fresh server's first page draws before torch has loaded (see engine_loaded)."""
from __future__ import annotations

import contextlib
import json
import logging
import runpy
import sqlite3
import sys
from pathlib import Path

import streamlit as st

from dgnam_engine.errors import UserError

from .links import PRESENT, is_new_link, presenting
from .plain import message, plain

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ENTRYPOINT = ASSETS.parent / "streamlit_app.py"
log = logging.getLogger("dgnam_studio")


def page_header(title: str, intro: str = "", help: str | None = None, aside=None) -> None:
    """Every page starts here. A page opened by its URL (/run, a link from a slide) before any session of this
    server called st.navigation is run by Streamlit's legacy pages-folder mode, without streamlit_app.py. Then run
    the entrypoint instead: its st.navigation switches the server over and runs this same page inside the app.
    `aside()` draws something small on the title's row, at its right (a row less above the page's content)."""
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        runpy.run_path(str(ENTRYPOINT))
        st.stop()
    if aside is None:
        st.title(title)
    else:
        left, right = st.columns([3, 1.3], vertical_alignment="center")
        left.title(title)
        with right:
            aside()
    if intro and not presenting():  # on a projector the presenter says it; the pictures get the room
        st.markdown(intro, help=help)


def _set_presenting(on: bool) -> None:
    st.session_state[PRESENT] = st.session_state["present_toggle"] = on
    if on:
        st.query_params[PRESENT] = "1"
    else:
        st.query_params.pop(PRESENT, None)


def take_present_link() -> None:
    """`?present=1` in a link turns presentation mode on (once per session, like the unit links)."""
    value = st.query_params.get(PRESENT)
    if value is not None and is_new_link({PRESENT: value}):
        st.session_state[PRESENT] = value not in ("0", "false", "")


PRESENT_CSS = """
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stExpandedSidebarControl"],
[data-testid="stSidebarCollapseButton"], header[data-testid="stHeader"] { display: none !important; }
[data-testid="stMainBlockContainer"] { max-width: 100%; padding-top: 1rem; }
[data-testid="stMain"] [data-testid="stImage"] img { max-height: 50vh; }
[data-testid="stImageCaption"] { font-size: 1.05rem; }
"""


def apply_style() -> None:
    css = (ASSETS / "style.css").read_text() + (PRESENT_CSS if presenting() else "")
    st.markdown(f"<style>{css}</style>", unsafe_allow_html=True)


def present_exit() -> None:
    """In presentation mode the sidebar is gone: a small way back, top right of every page."""
    if presenting():
        st.button("Leave presentation mode", key="present_exit", on_click=_set_presenting, args=(False,),
                  icon=":material/close_fullscreen:")


def engine_loaded() -> bool:
    """Whether this process has loaded the engine (torch, the catalogue): only a fresh server's first page has not,
    and that page shows what it can before loading it."""
    return "dgnam_engine.runner" in sys.modules


def sidebar():
    """The presentation toggle now; returns the slot of the note on the device and prior, which needs the engine
    (sidebar_note fills it: before the page once the engine is loaded, else after it)."""
    with st.sidebar:
        st.session_state["present_toggle"] = presenting()
        st.toggle("Presentation mode", key="present_toggle",
                  on_change=lambda: _set_presenting(st.session_state["present_toggle"]),
                  help="Hides this sidebar and the settings and makes the pictures bigger, for a projector. "
                       "Link: add ?present=1 to the address.")
        return st.empty()


def sidebar_note(slot) -> None:
    from . import catalog, state

    dev = state.device()
    prior = catalog.default_prior()
    with slot.container():
        st.caption(f"Running on the **{'GPU' if dev.startswith('cuda') else 'CPU'}** · picture generator "
                   f"(prior): **{catalog.prior_title(prior)}**")
        st.caption("DGN-AM (Nguyen et al., NIPS 2016) searches a generator's code for the picture that a "
                   "neuron likes most.")


def not_found_notice(page) -> None:
    """An address naming no page (/nonexistent) opens the default page; say so instead of landing silently."""
    from urllib.parse import urlparse

    url = st.context.url
    if not url or not getattr(page, "_default", False):
        return
    base = str(st.get_option("server.baseUrlPath") or "").strip("/")
    path = urlparse(url).path.strip("/")
    path = path[len(base):].strip("/") if base and path.startswith(base) else path
    if path and path != page.url_path:
        st.warning(f"Page not found: /{plain(path)}. Here is {page.title} instead; every page is listed in the sidebar.",
                   icon=":material/travel_explore:")


@contextlib.contextmanager
def friendly_errors():
    """No tracebacks for the audience: one line saying what went wrong and what to do."""
    try:
        yield
    except UserError as exc:
        st.error(message(exc), icon=":material/error:")
    except Exception as exc:  # Streamlit's own control-flow exceptions are BaseExceptions and pass through
        log.exception("page failed")
        if is_data_damage(exc):  # a restart reads the same damaged file again: say what repairs it
            st.error(DATA_DAMAGE, icon=":material/error:")
        else:
            st.error("Something went wrong on this page. Reload the page and try again; if it keeps happening, "
                     "restart the dashboard with `bash run.sh` and check the Setup page.", icon=":material/error:")


DATA_DAMAGE = ("Some stored data on this machine is damaged and cannot be read; restarting will not help. In the "
               "project folder run `python -m dgnam_engine store check --repair`, then reload this page.")


def is_data_damage(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a stored file that cannot be read: a damaged SQLite database, a JSON
    value or text that does not parse. A locked or full database (OperationalError) is not damage."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            return True
        if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
