from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installer():
    spec = importlib.util.spec_from_file_location("easyphoto_install", REPO / "install.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


class RecordingPip:
    """Stands in for A1111's `launch.run_pip` (the host is the one thing we may fake)."""

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[str] = []
        self.fail_on = fail_on

    def __call__(self, args: str, desc: str) -> None:
        self.calls.append(args)
        if self.fail_on and self.fail_on in args:
            raise RuntimeError(f"Couldn't install {desc}.\nstderr: ERROR: no matching distribution")


def test_project_requirements_parse(installer):
    requirements = installer.parse_requirements((REPO / "requirements.txt").read_text())
    names = {r.name for r in requirements}
    assert {"diffusers", "safetensors", "opencv-python-headless"} <= names
    assert "torch" not in names  # the host owns torch
    cv = next(r for r in requirements if r.name == "opencv-python-headless")
    assert cv.import_name == "cv2"


def test_present_packages_are_never_upgraded_or_downgraded(installer):
    # numpy and pytest are installed here; absurd bounds must still not trigger pip
    text = "numpy>=999\npytest<1  # import: pytest\n"
    pip = RecordingPip()
    failed = installer.install_missing(installer.parse_requirements(text), pip, log=lambda m: None)
    assert pip.calls == [] and failed == []


def test_import_name_satisfies_another_distribution(installer):
    # e.g. the host's opencv-python satisfies our opencv-python-headless: `json` always imports
    text = "some-other-build-of-json>=1  # import: json\n"
    pip = RecordingPip()
    installer.install_missing(installer.parse_requirements(text), pip, log=lambda m: None)
    assert pip.calls == []


def test_missing_package_is_installed_with_its_flags(installer):
    text = "easyphoto-surely-missing-pkg>=1.0\nface_recognition --no-deps\n"
    pip = RecordingPip()
    installer.install_missing(installer.parse_requirements(text), pip, log=lambda m: None)
    assert pip.calls[0] == 'install "easyphoto-surely-missing-pkg>=1.0"'
    if len(pip.calls) == 2:  # face_recognition may really be installed on this machine
        assert pip.calls[1] == 'install --no-deps "face_recognition"'


def test_failed_install_is_reported_with_the_manual_command(installer):
    text = "easyphoto-surely-missing-a\neasyphoto-surely-missing-b\n"
    pip = RecordingPip(fail_on="missing-a")
    messages: list[str] = []
    failed = installer.install_missing(installer.parse_requirements(text), pip, messages.append)
    assert failed == ["easyphoto-surely-missing-a"]
    assert len(pip.calls) == 2  # one failure does not stop the others
    assert "no matching distribution" in messages[0]
    assert f'"{sys.executable}" -m pip install "easyphoto-surely-missing-a"' in messages[0]
