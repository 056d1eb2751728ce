#!/usr/bin/env bash
# Set up (first time) and run the test suite, offline, on the CPU.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
bash scripts/install_browser.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
