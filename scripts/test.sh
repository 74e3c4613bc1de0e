#!/usr/bin/env bash
# Sets up the environment (idempotent) and runs the whole test suite, offline, in one pytest-xdist
# worker per core (REFNET_TEST_WORKERS to change; tests sharing a module fixture stay in one worker).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q -n "${REFNET_TEST_WORKERS:-auto}" --dist loadgroup --no-loadscope-reorder \
  --durations=25 tests "$@"
