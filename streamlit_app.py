"""DGN-AM Studio dashboard: `streamlit run streamlit_app.py` (or `bash run.sh`)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the dashboard may wait on the network

import streamlit as st  # noqa: E402

from app import layout  # noqa: E402

st.set_page_config(page_title="DGN-AM Studio", page_icon=str(layout.ASSETS / "icon.png"), layout="wide")
layout.take_present_link()
layout.apply_style()

# Each page's URL is its file name (/run, /priors, ...): see layout.page_header for why that matters.
pages = {
    "Explore": [
        st.Page("pages/browse.py", title="Browse neurons", icon=":material/grid_view:", default=True),
        st.Page("pages/run.py", title="Run", icon=":material/play_circle:"),
    ],
    "Compare": [
        st.Page("pages/priors.py", title="Compare priors", icon=":material/layers:"),
        st.Page("pages/models.py", title="Compare models", icon=":material/hub:"),
    ],
    "Library": [
        st.Page("pages/gallery.py", title="Gallery", icon=":material/photo_library:"),
        st.Page("pages/setup.py", title="Setup", icon=":material/settings:"),
    ],
}
page = st.navigation(pages)
layout.sidebar()
layout.present_exit()
with layout.friendly_errors():
    page.run()
