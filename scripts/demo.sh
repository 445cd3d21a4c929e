#!/usr/bin/env bash
# Set up and run the whole demo cycle on a laptop CPU:   bash scripts/demo.sh
# ingest → preprocess → train (real 4-bit NF4 QLoRA) → dream → eval → promote, on the bundled sample
# corpus with a tiny Qwen2 built locally (nothing is downloaded). State goes to ./data, ./adapters,
# ./versions.json (or $MOTHBRAIN_HOME). Extra arguments are passed on, e.g. --set train.max_steps=30.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
rc=0
.venv/bin/mothbrain run weekly --config configs/demo.yaml "$@" || rc=$?
# What eval measured (adapter, base side by side) and each of the gate's checks, even when it refused.
.venv/bin/mothbrain eval --show --config configs/demo.yaml || true
.venv/bin/mothbrain status --config configs/demo.yaml
exit "$rc"
