#!/usr/bin/env bash
# Set up and run the checks:   bash scripts/test.sh   (extra arguments go to pytest)
# ruff (format and lint, settings in pyproject.toml) first, then the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff format --check -q mothbrain tests bench scripts
.venv/bin/ruff check -q mothbrain tests bench scripts
.venv/bin/python -m pytest -q "$@"
