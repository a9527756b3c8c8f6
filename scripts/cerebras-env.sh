#!/usr/bin/env bash
# Build the Python environment of the Cerebras backend: CPython 3.11 + cerebras-pytorch, which pins
# torch 2.4.0 (PyPI's CUDA build and its nvidia wheels: ~6 GB, ~2 minutes on a fast link).
#   scripts/cerebras-env.sh [DIR]      (same as `gigagpt env cerebras [--path DIR]`)
# DIR defaults to .venv-cerebras in the repository, where gigagpt looks first; elsewhere, name it
# in gigagpt.toml: [python] cerebras = "DIR/bin/python". PYTHON311=... picks the interpreter.
# Idempotent: a complete environment (its .stamp names the same requirement) returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.venv-cerebras}
REQ="cerebras-pytorch==2.10.0"
# What gigagpt itself needs there beyond the SDK's own dependencies. Checked by importing it, not
# in the stamp: an environment built before it was needed gets it in seconds, not a 6 GB rebuild.
EXTRA="tomli-w>=1.0"
EXTRA_IMPORT="import tomli_w"
if [ -x "$DIR/bin/python" ] && [ "$(cat "$DIR/.stamp" 2>/dev/null)" = "$REQ" ]; then
  "$DIR/bin/python" -c "$EXTRA_IMPORT" 2>/dev/null || "$DIR/bin/python" -m pip install -q "$EXTRA"
  exit 0
fi
PY=${PYTHON311:-$(command -v python3.11 || true)}
if [ -z "$PY" ] || ! "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  echo "cerebras-env: needs CPython 3.11 (cerebras-pytorch has cp311 wheels only); set PYTHON311=/path/to/python3.11" >&2
  exit 1
fi
echo "cerebras-env: building $DIR with $REQ (~6 GB, a few minutes) ..." >&2
[ -x "$DIR/bin/python" ] || "$PY" -m venv "$DIR"
printf '*\n' > "$DIR/.gitignore"  # never committed, wherever it lies
"$DIR/bin/python" -m pip install -q "$REQ" "$EXTRA"
"$DIR/bin/python" -c "import cerebras.pytorch; $EXTRA_IMPORT"
echo "$REQ" > "$DIR/.stamp"
echo "cerebras-env: ready: $DIR/bin/python" >&2
