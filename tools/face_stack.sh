# Sourced by tools/test.sh and tools/studio.sh: the face stack the product prefers (DESIGN.md §3),
# installed the same way for the tests and for a user.
# MediaPipe 0.10.21 is the last release whose wheel bundles its legacy solutions' models (face
# mesh, pose, selfie segmentation). --no-deps: its pins would downgrade numpy and replace
# OpenCV; it needs protobuf 4.25.x (5.x breaks it) and runs with numpy 2 despite its pin.
install_face_stack() {
    "$1/bin/python" -m pip install -q --disable-pip-version-check --no-deps mediapipe==0.10.21
    "$1/bin/python" -m pip install -q --disable-pip-version-check absl-py attrs flatbuffers \
        matplotlib "protobuf>=4.25.3,<5"
}
