#!/usr/bin/env bash
# Set up (first time) and start the DGN-AM Studio dashboard on http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
exec .venv/bin/python -m streamlit run streamlit_app.py "$@"
