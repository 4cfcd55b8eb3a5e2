#!/usr/bin/env bash
# Runs the test suite in fresh virtual environments built from this project's own files.
#   bash tools/test.sh          both: newest packages, then AUTOMATIC1111 1.10's pins
#   bash tools/test.sh newest   only the newest compatible packages
#   bash tools/test.sh a1111    only constraints/a1111-1.10.txt
# Extra arguments after the first go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
shift || true

# pip through a filter of this machine's local-index warnings; pip's own failure still fails
quiet_pip() {
    "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }
}

run_suite() {
    local name="$1" venv=".venv-test-$1"
    shift
    echo "=== $name: creating $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # torch is pinned to the CPU wheel: an unpinned torch pulls gigabytes of CUDA packages.
    quiet_pip "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        torch==2.13.0 -e ".[test,app]" "$@"
    # MediaPipe's legacy solutions (bundled models) are optional for the product; the tests run
    # them. --no-deps: its pins would downgrade numpy and replace OpenCV (DESIGN.md §3).
    quiet_pip "$venv/bin/python" -m pip install -q --no-deps mediapipe==0.10.21
    quiet_pip "$venv/bin/python" -m pip install -q absl-py attrs flatbuffers matplotlib \
        "protobuf>=4.25.3,<5" "$@"
    "$venv/bin/python" -c "import torch, diffusers, transformers, pydantic, gradio, numpy; \
print('versions: torch', torch.__version__, '| diffusers', diffusers.__version__, \
'| transformers', transformers.__version__, '| pydantic', pydantic.VERSION, \
'| gradio', gradio.__version__, '| numpy', numpy.__version__)"
    echo "=== $name: ruff + pytest"
    "$venv/bin/ruff" check .
    "$venv/bin/python" -m pytest -q "${PYTEST_ARGS[@]}"
}

PYTEST_ARGS=("$@")
case "$which" in
    newest) run_suite newest ;;
    a1111) run_suite a1111 -c constraints/a1111-1.10.txt ;;
    all)
        run_suite newest
        run_suite a1111 -c constraints/a1111-1.10.txt
        ;;
    *) echo "usage: bash tools/test.sh [all|newest|a1111] [pytest args...]" >&2; exit 2 ;;
esac
