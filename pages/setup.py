"""Setup: the device in use, which weights are present or missing, and how to fetch the missing ones."""
import streamlit as st
import torch

from app import catalog, layout, state
from dgnam_engine import priors as P
from dgnam_engine import targets as T
from dgnam_engine import weights as W

layout.page_header("Setup", "What this machine has: the device, and which weights are present or missing.")

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


st.subheader("Networks")
rows = []
for name, spec in T.TARGETS.items():
    ok = T.weights_available(spec)
    rows.append({"network": name, "weights": "present" if ok else "missing",
                 "get it with": "" if ok or not spec.weights.fetchable else catalog.fetch_command(name),
                 "description": spec.title, "file": where(spec.weights) if spec.weights else "built in"})
st.dataframe(rows, hide_index=True, width="stretch")

st.subheader("Priors")
rows = []
for name, spec in P.all_specs().items():
    ok = P.is_available(spec)
    rows.append({"prior": name, "weights": "present" if ok else "missing",
                 "get it with": "" if ok or spec.kind != "original" else catalog.fetch_command(name),
                 "plays": spec.depth or "",
                 "kind": "demo (trained here)" if spec.kind == "trained" else "original (paper)",
                 "description": spec.title, "file": spec.file if spec.file else where(spec.weights)})
st.dataframe(rows, hide_index=True, width="stretch")
missing = [r["get it with"] for r in rows if r["get it with"]]
if missing:
    st.markdown("Fetch every missing original prior at once (needs internet once; the files go into the "
                "folders above and are found automatically):")
    st.code("python -m dgnam_engine fetch " + " ".join(c.split()[-1] for c in missing), language="bash")
if not catalog.available_priors():
    st.warning(catalog.NO_PRIOR)
st.info(catalog.DEMO_CAVEAT, icon=":material/info:")
