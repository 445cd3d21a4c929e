#!/usr/bin/env bash
# Set up MothBrain in ./.venv (idempotent):   bash scripts/setup.sh
# torch goes in first and pinned, so a machine without CUDA never pulls a multi-GB CUDA build:
#   - a CPU wheel of torch 2.13.0 on local disk (pip's find-links, as on our dev/CI machines) is used as is;
#   - else, with an NVIDIA GPU, the regular (CUDA) torch 2.13.0;
#   - else the CPU build from PyTorch's CPU index.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${MOTHBRAIN_TORCH_VERSION:-2.13.0}

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
pip_install() {  # quiet pip; drops the warnings some machines' pip config prints for every package
  "${PIP[@]}" install "$@" 2> >(grep -v "is neither a file nor a directory" >&2)
}

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "== installing torch $TORCH_VERSION"
  if "${PIP[@]}" install --no-index --no-deps "torch==$TORCH_VERSION" >/dev/null 2>&1; then
    pip_install "torch==$TORCH_VERSION"          # its dependencies; torch itself is satisfied
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip_install "torch==$TORCH_VERSION"
  else
    pip_install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu \
      --extra-index-url https://pypi.org/simple
  fi
fi
echo "== installing mothbrain and its dependencies"
pip_install -e ".[test]"
.venv/bin/python -c "import torch, mothbrain; print(f'== ready: mothbrain {mothbrain.__version__}, torch {torch.__version__}, cuda={torch.cuda.is_available()}')"
