#!/usr/bin/env bash
# The standalone studio on a fresh machine: builds .venv with the stack the tests use (the CPU
# torch wheel, the project with its UI extras, MediaPipe's legacy solutions), fetches the face
# detector once through the weights registry, then runs app.py with the arguments given.
#   bash tools/studio.sh [app.py flags...]      e.g. --base-model sd15.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/face_stack.sh
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import easyphoto_app, mediapipe" 2>/dev/null
then
    python3 -m venv .venv
    # An unpinned torch pulls gigabytes of CUDA packages; on a GPU machine install yours first.
    .venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0 -e ".[app]"
    install_face_stack .venv
fi
# YuNet (233 KB) with a progress bar; offline it prints which file to put where, and the studio
# still starts (face detection then falls back to dlib's HOG detector, and the page says so).
.venv/bin/python -m easyphoto_core download face_detection_yunet_2023mar || true
exec .venv/bin/python app.py "$@"
