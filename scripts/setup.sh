#!/usr/bin/env bash
# Make .venv with ftwb (editable) and its test tools. Idempotent and quick when nothing changed.
# On a GPU box whose Python already has a CUDA build of torch, the venv reuses it
# (--system-site-packages) instead of downloading another multi-GB build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    "$PY" -m venv --system-site-packages .venv
  else
    "$PY" -m venv .venv
  fi
fi
stamp=.venv/.ftwb-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
quiet() { grep -v -e "is ignored: it is neither" -e "^$" || true; }
if [ ! -f "$stamp" ]; then
  echo "ftwb: first set-up: installing into .venv (torch, transformers, textual, ...); this takes a few minutes" >&2
else
  echo "ftwb: pyproject.toml changed: updating .venv" >&2
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | quiet
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # 2.13.0: a CPU build lies on disk on CPU machines; elsewhere pip fetches the normal build.
  .venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | quiet
fi
.venv/bin/python -m pip install -q -e ".[test]" 2>&1 | quiet
echo "$want" > "$stamp"
echo "ftwb: .venv is ready" >&2
