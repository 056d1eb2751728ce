#!/usr/bin/env bash
# Set up (first time) and start the DGN-AM Studio dashboard on http://localhost:8501
# Online by default so that Setup's Download buttons work; nothing else in the dashboard uses the network.
# HF_HUB_OFFLINE=1 bash run.sh keeps it entirely offline (Setup then says downloads are off).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/python -m streamlit run streamlit_app.py "$@"
