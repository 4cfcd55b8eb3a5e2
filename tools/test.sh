#!/usr/bin/env bash
# Runs the test suite in fresh virtual environments built from this project's own files.
#   bash tools/test.sh          both suites, side by side (each prints to its log, shown after)
#   bash tools/test.sh newest   only the newest compatible packages (the standalone app's stack)
#   bash tools/test.sh a1111    only the real A1111 1.10.1 + sd-webui-controlnet package set,
#                               with our install.py run over it the way the WebUI runs it
# Extra arguments after the first go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-all}"
shift || true
PYTEST_ARGS=("$@")
HOST_FREEZE=../shared/hosts/a1111-1.10.1-controlnet-1.1.455.txt

# pip through a filter of this machine's local-index warnings; pip's own failure still fails
quiet_pip() {
    "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }
}

source tools/face_stack.sh

say() {  # a step of a suite, with the time (CI's budget is 20 min for everything)
    echo "=== $* ($(date +%T))"
}

print_versions() {
    "$1/bin/python" -c "import torch, diffusers, transformers, pydantic, gradio, numpy; \
print('versions: torch', torch.__version__, '| diffusers', diffusers.__version__, \
'| transformers', transformers.__version__, '| pydantic', pydantic.VERSION, \
'| gradio', gradio.__version__, '| numpy', numpy.__version__)"
}

run_tests() {
    local name="$1" venv="$2"
    shift 2
    say "$name: ruff + pytest"
    "$venv/bin/ruff" check .
    # Each suite has its own temp folder and screenshots (the two may run side by side). The
    # slowest tests are printed: CI must stay under 20 min for both suites.
    EASYPHOTO_TEST_SUITE="$name" EASYPHOTO_SCREENSHOTS="$PWD/tests/artifacts/$name" \
        "$venv/bin/python" -m pytest -q -rf \
        --durations=25 --basetemp="$PWD/.pytest-tmp-$name" "$@" "${PYTEST_ARGS[@]}"
}

build_newest() {
    local venv=.venv-test-newest
    say "newest: creating $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # torch is pinned to the CPU wheel: an unpinned torch pulls gigabytes of CUDA packages.
    quiet_pip "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        torch==2.13.0 -e ".[test,app]"
    install_face_stack "$venv"
    print_versions "$venv"
}

suite_newest() {
    build_newest
    run_tests newest .venv-test-newest
}

# The real host: A1111 1.10.1's pip freeze, then our install.py through a stand-in `launch`
# whose run_pip calls pip exactly as A1111's does; pip freeze may only gain lines.
build_a1111() {
    local venv=.venv-test-a1111 logs=.venv-test-a1111-logs
    say "a1111: creating $venv from $HOST_FREEZE"
    rm -rf "$venv" "$logs" && mkdir -p "$logs"
    python3 -m venv "$venv"
    # torch: the CPU wheel (a user's A1111 has 2.1.2+cu121; the freeze marks the line). The
    # freeze's other lines go in with --no-deps: it is a complete closure, and resolving it again
    # would let pip swap torch or numpy. torchvision 0.16.2 is A1111's pin (imports with
    # --no-deps only). openai/CLIP is installed from GitHub by A1111 and is only a comment in the
    # freeze (the PyPI "clip" is another package): EasyPhoto never imports it, so it is left out.
    quiet_pip "$venv/bin/python" -m pip install -q --disable-pip-version-check torch==2.13.0
    grep -v -E "^(torch|torchvision)==" "$HOST_FREEZE" > "$logs/host-freeze.txt"
    if command -v uv >/dev/null; then  # uv fetches the 150 wheels in parallel: minutes faster
        uv pip install -q --python "$venv/bin/python" --no-deps -r "$logs/host-freeze.txt" \
            torchvision==0.16.2
    else
        quiet_pip "$venv/bin/python" -m pip install -q --no-deps -r "$logs/host-freeze.txt" \
            torchvision==0.16.2
    fi
    "$venv/bin/python" -m pip freeze --all > "$logs/freeze-before.txt"
    say "a1111: our install.py, as the WebUI's prepare_environment runs it"
    PYTHONPATH="$PWD/tools/a1111_launch" "$venv/bin/python" install.py | tee "$logs/install.log"
    "$venv/bin/python" -m pip freeze --all > "$logs/freeze-after.txt"
    if grep -q "^<" <(diff "$logs/freeze-before.txt" "$logs/freeze-after.txt"); then
        echo "install.py changed packages the host has:" >&2
        diff "$logs/freeze-before.txt" "$logs/freeze-after.txt" >&2 || true
        exit 1
    fi
    echo "install.py added (pip freeze diff):"
    { diff "$logs/freeze-before.txt" "$logs/freeze-after.txt" || true; } | grep "^>" \
        || echo "  nothing"
    say "a1111: install.py's import check, then its fast path (A1111 runs it at every start)"
    "$venv/bin/python" -m easyphoto_core.environment --ui
    local TIMEFORMAT="install.py with nothing missing: %R s"
    time PYTHONPATH="$PWD/tools/a1111_launch" "$venv/bin/python" install.py
    # Test tools only (pytest, ruff, peft for cross-checks, playwright), held like install.py
    # holds the host's packages, so the suite runs on exactly the host's versions.
    "$venv/bin/python" -c "import install; \
print(install.held_constraints(install.installed_distributions()), end='')" > "$logs/held.txt"
    quiet_pip "$venv/bin/python" -m pip install -q -c "$logs/held.txt" \
        "pytest>=7" "hypothesis>=6" "ruff>=0.5" "peft<=0.13.2" playwright
    print_versions "$venv"
}

suite_a1111() {
    build_a1111
    run_tests a1111 .venv-test-a1111 "$@"
}

# Both suites at once, each on one thread per process (OMP_NUM_THREADS=1, inherited by the
# trainer and server subprocesses): a suite alone keeps ~1.3 of 2 cores busy, much of it
# single-threaded imports, and two torch processes of 2 threads each on 2 cores spin-wait
# instead of working. The A1111 suite runs its folders in another order, so the two suites'
# browser tests (which saturate the machine: browser, server and trainer) do not meet.
both_suites() {
    mkdir -p .test-logs
    export OMP_NUM_THREADS=1
    suite_newest > .test-logs/newest.log 2>&1 &
    local newest=$!
    local order=()
    [ ${#PYTEST_ARGS[@]} -gt 0 ] || order=(tests/unit tests/webui tests/train tests/pipeline \
        tests/gpu tests/app)
    suite_a1111 "${order[@]}" > .test-logs/a1111.log 2>&1 &
    local a1111=$! newest_status=0 a1111_status=0
    wait "$newest" || newest_status=$?
    wait "$a1111" || a1111_status=$?
    for name in newest a1111; do
        echo "################ suite: $name"
        grep -v "is ignored: it is neither" ".test-logs/$name.log" || true
    done
    echo "=== both suites ended ($(date +%T))"
    [ "$newest_status" -eq 0 ] || echo "FAILED: the newest-packages suite" >&2
    [ "$a1111_status" -eq 0 ] || echo "FAILED: the A1111 suite" >&2
    [ "$newest_status" -eq 0 ] && [ "$a1111_status" -eq 0 ]
}

case "$which" in
    newest) suite_newest ;;
    a1111) suite_a1111 ;;
    all) both_suites ;;
    *) echo "usage: bash tools/test.sh [all|newest|a1111] [pytest args...]" >&2; exit 2 ;;
esac
