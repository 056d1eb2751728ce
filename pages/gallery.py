"""Gallery: everything rendered so far, filterable; one PNG, or a ZIP of a selection with its settings."""
import streamlit as st

from app import cards, catalog, export, layout, pictures, state
from app.figures import fixed

SHOW_MAX = 60

layout.page_header("Gallery", "Everything rendered so far. Download one picture, or tick several and "
                   "download them as a ZIP with their settings and activations.")
store = state.store()
c1, c2, c3 = st.columns(3)
models = c1.multiselect("Network", store.distinct("model"), key="gal_models", placeholder="all")
layers = c2.multiselect("Layer", store.distinct("layer"), key="gal_layers", placeholder="all")
priors = c3.multiselect("Prior", store.distinct("prior"), key="gal_priors", placeholder="all",
                        format_func=cards.short_prior)
results = [r for r in store.query(shipped=False) if (not models or r.model in models) and (not layers or r.layer in layers)
           and (not priors or r.prior in priors)]
pictures.damaged_notice(store)
if not results:
    st.info("Nothing here yet. Render a neuron on the **Run** page and it appears here." if len(store) == 0
            else "No picture matches these filters.")
    st.stop()

shown = results[:SHOW_MAX]
st.caption(f"{len(results)} picture{'s' if len(results) != 1 else ''}"
           + (f", the newest {SHOW_MAX} shown" if len(results) > SHOW_MAX else ""))
zip_slot = st.empty()  # the ZIP button above the pictures, filled once the ticks are read


def select_all() -> None:
    for r in shown:
        st.session_state[f"gal_sel_{r.key}"] = st.session_state["gal_all"]


st.checkbox("Select all shown", key="gal_all", on_change=select_all)
chosen = []
cols = st.columns(6)
for i, r in enumerate(shown):
    with cols[i % 6]:
        pictures.show(r, caption=f"{cards.title_markdown(r)} · {cards.grid_caption(r)}")
        st.caption(f"{catalog.model_short(r.model)} · {r.layer} · seed {r.seed} · {r.settings.get('n_iters')} "
                   f"steps · activation {fixed(r.activation_final)}")
        if st.checkbox("Select", key=f"gal_sel_{r.key}"):
            chosen.append(r)
        st.download_button("PNG", r.png(), file_name=export.file_name(r), mime="image/png", key=f"gal_dl_{r.key}",
                           icon=":material/download:", width="stretch")


zip_slot.download_button(f"Download ZIP of {len(chosen)} selected", export.zip_of(chosen) if chosen else b"",
                         file_name="dgnam_results.zip", mime="application/zip", key="gal_zip", disabled=not chosen,
                         type="primary", icon=":material/folder_zip:",
                         help="The pictures plus results.json with the settings and activations of each (and the "
                              "photo a picture started from).")
