"""DGN-AM Studio dashboard: `streamlit run streamlit_app.py` (or `bash run.sh`)."""
# No HF_HUB_OFFLINE default here: only Setup's Download buttons use the network (weights are looked up on disk,
# never through the Hub); HF_HUB_OFFLINE=1 set by the user turns those off too.
import streamlit as st

from app import layout

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
        st.Page("pages/paper.py", title="The paper's questions", icon=":material/quiz:"),
        st.Page("pages/quiz.py", title="Guess the neuron", icon=":material/psychology_alt:"),
    ],
    "Library": [
        st.Page("pages/gallery.py", title="Gallery", icon=":material/photo_library:"),
        st.Page("pages/setup.py", title="Setup", icon=":material/settings:"),
    ],
}
page = st.navigation(pages)
note = layout.sidebar()
# The sidebar's note loads the engine: on a fresh server it waits until the page is drawn (Browse's grid comes first)
late_note = not layout.engine_loaded()
if not late_note:
    layout.sidebar_note(note)
layout.present_exit()
layout.not_found_notice(page)
try:
    with layout.friendly_errors():
        page.run()
finally:
    if late_note:
        layout.sidebar_note(note)
