#!/usr/bin/env bash
# Set up and run the whole demo cycle on a laptop CPU:   bash scripts/demo.sh
# ingest → preprocess → train (real 4-bit NF4 QLoRA) → dream → eval → promote, on the bundled sample
# corpus with a tiny Qwen2 built locally (nothing is downloaded). State goes to ./data, ./adapters,
# ./versions.json (or $MOTHBRAIN_HOME). Extra arguments are passed on, e.g. --set train.max_steps=30.
# "Recent" is measured from the pinned ingest.now in configs/demo.yaml, so the data set, the eval table
# and the gate's decision are the same on every day. Exit 0 whether the gate promotes or refuses.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
rc=0
.venv/bin/mothbrain run weekly --config configs/demo.yaml "$@" || rc=$?
# What eval measured (adapter, base side by side) and each of the gate's checks, even when it refused.
.venv/bin/mothbrain eval --show --config configs/demo.yaml || true
# The wiki-worker on a working copy of the sample wiki (a git repo: every merge is one commit, revertible).
if [ ! -d data/demo-wiki ]; then
  cp -r data/sample/wiki data/demo-wiki
  git -C data/demo-wiki init -q && git -C data/demo-wiki add -A
  git -C data/demo-wiki -c user.name=MothBrain -c user.email=mothbrain@localhost commit -q -m "sample wiki"
fi
.venv/bin/mothbrain run wiki --config configs/demo.yaml "$@" || rc=$?
.venv/bin/mothbrain proposals list --limit 10 --config configs/demo.yaml
.venv/bin/mothbrain status --config configs/demo.yaml
# One line: how the weekly cycle ended. A refusal by the gate is an outcome (exit 0), not a failure.
.venv/bin/python - <<'PY'
from mothbrain.config import load_config
from mothbrain.ops.runs import load_runs

weekly = [r for r in load_runs(load_config("configs/demo.yaml")) if r.get("chain") == "weekly"]
last = weekly[-1] if weekly else None
print(f"demo: weekly cycle {last['status']} — {last.get('outcome') or 'see its log'}" if last else "demo: no weekly run")
PY
exit "$rc"
