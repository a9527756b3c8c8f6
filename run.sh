#!/usr/bin/env bash
# Set up .venv/ (reused when complete) and run gigagpt.
#   ./run.sh          the dashboard, with the GPT-2 tokenizer and the Shakespeare dataset ready
#   ./run.sh test     the test suite
#   ./run.sh lint     ruff check (the house style; settings in pyproject.toml)
#   ./run.sh ARGS...  any gigagpt command, e.g. ./run.sh train nano
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv
# The venv is complete when its stamp matches pyproject.toml; otherwise (re)install.
stamp="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "setting up $VENV ..." >&2
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  # torch first, pinned: a bare 'torch' requirement would pull a multi-GB CUDA build on machines
  # that keep a CPU wheel locally. Users who already have torch in the venv keep theirs.
  "$VENV/bin/python" -c "import torch" 2>/dev/null || "$VENV/bin/python" -m pip install -q "torch==2.13.0"
  "$VENV/bin/python" -m pip install -q -e ".[test,hf]"  # hf: tests/test_hf.py checks exports with transformers
  echo "$stamp" > "$VENV/.stamp"
fi
GG="$VENV/bin/gigagpt"
case "${1:-}" in
  test)
    shift
    # The Cerebras backend's tests need the SDK's own environment (~6 GB, built once, then reused).
    scripts/cerebras-env.sh || echo "run.sh: no Cerebras SDK environment: its tests will be skipped" >&2
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  lint)
    shift
    exec "$VENV/bin/ruff" check "${@:-.}"
    ;;
  "")
    # The default job: a working tokenizer, the Shakespeare dataset, then the dashboard.
    "$VENV/bin/python" -c "from gigagpt.tokenizer import get_tokenizer; get_tokenizer()" 2>/dev/null \
      || "$GG" data fetch-tokenizer
    [ -f data/shakespeare/meta.json ] || "$GG" data prepare shakespeare
    exec "$GG" dash
    ;;
  *)
    exec "$GG" "$@"
    ;;
esac
