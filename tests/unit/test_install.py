from __future__ import annotations

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from easyphoto_core import environment

REPO = Path(__file__).resolve().parents[2]
A1111_HOST = {"transformers": "4.30.2", "huggingface-hub": "0.36.2", "safetensors": "0.4.2",
              "torch": "2.1.2", "numpy": "1.26.2"}  # ../shared/hosts/a1111-1.10.1-*.txt


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
        self.constraints: list[str] = []
        self.fail_on = fail_on

    def __call__(self, args: str, desc: str) -> None:
        self.calls.append(args)
        held = args.split('-c "', 1)[1].split('"', 1)[0]
        self.constraints.append(Path(held).read_text())
        if self.fail_on and self.fail_on in args:
            raise RuntimeError(f"Couldn't install {desc}.\nstderr: ERROR: no matching distribution")


def requirement(installer, line: str):
    return installer.parse_requirements(line)[0]


def test_project_requirements_parse(installer):
    requirements = installer.parse_requirements((REPO / "requirements.txt").read_text())
    names = {r.name for r in requirements}
    assert {"diffusers", "safetensors", "opencv-python-headless"} <= names
    assert "torch" not in names  # the host owns torch
    cv = next(r for r in requirements if r.name == "opencv-python-headless")
    assert cv.import_name == "cv2"


def test_installed_distributions_match_importlib_metadata(installer):
    slow = {}
    for dist in importlib.metadata.distributions():
        slow.setdefault(installer.canonical(dist.metadata["Name"]), dist.version)
    assert installer.installed_distributions() == slow


def test_constraints_hold_every_installed_distribution(installer):
    installed = installer.installed_distributions()
    held = dict(line.split("==") for line in installer.held_constraints(installed).split())
    assert held["numpy"] == importlib.metadata.version("numpy")
    assert held["pytest"] == importlib.metadata.version("pytest")
    assert len(held) == len(list(importlib.metadata.distributions())) or len(held) > 20


def test_diffusers_is_chosen_by_the_hosts_transformers(installer):
    diffusers = requirement(installer, "diffusers>=0.27")
    assert installer.compatible_line(diffusers, A1111_HOST) == "diffusers<0.36,>=0.27"
    newer = {**A1111_HOST, "transformers": "4.49.0", "torch": "2.5.1+cu124"}
    assert installer.compatible_line(diffusers, newer) == "diffusers>=0.27,>=0.36"
    old_torch = {**newer, "torch": "2.1.2+cu121"}
    assert installer.compatible_line(diffusers, old_torch) == "diffusers<0.36,>=0.27"
    assert installer.compatible_line(diffusers, {}) == "diffusers>=0.27,>=0.36"  # pip adds all
    assert installer.compatible_line(diffusers, {"transformers": "4.25.1"}) is None


def test_present_packages_are_never_planned(installer):
    # numpy is installed at the host's version; absurd bounds on a present module still plan nothing
    text = "numpy>=1.20\npytest<1  # import: pytest\n"
    plan = installer.plan_install(installer.parse_requirements(text), {"numpy": "1.26.2"})
    assert plan.install == [] and plan.problems == []


def test_a_host_package_too_old_installs_nothing_and_names_the_command(installer):
    text = "easyphoto-surely-missing>=1\ntransformers>=4.30.2\n"
    host = {"transformers": "4.25.1"}
    plan = installer.plan_install(installer.parse_requirements(text), host)
    assert len(plan.problems) == 1
    assert "transformers 4.25.1" in plan.problems[0]
    assert f'"{sys.executable}" -m pip install "transformers>=4.30.2"' in plan.problems[0]
    pip, messages = RecordingPip(), []
    failed = installer.install(plan, host, pip, messages.append)
    assert pip.calls == [] and failed and "transformers 4.25.1" in messages[0]


def test_no_compatible_diffusers_names_what_to_upgrade(installer):
    plan = installer.plan_install([requirement(installer, "diffusers>=0.27")],
                                  {"transformers": "4.25.1"})
    assert plan.install == []
    assert "transformers>=4.30.2" in plan.problems[0] and "pip install" in plan.problems[0]


def test_missing_package_is_installed_with_its_flags_and_every_package_held(installer):
    text = "easyphoto-surely-missing-pkg>=1.0\neasyphoto-missing-b --no-deps\n"
    installed = installer.installed_distributions()
    plan = installer.plan_install(installer.parse_requirements(text), installed)
    pip = RecordingPip()
    assert installer.install(plan, installed, pip, log=lambda m: None) == []
    assert pip.calls[0].startswith("install -c ")
    assert pip.calls[0].endswith(' "easyphoto-surely-missing-pkg>=1.0"')
    assert pip.calls[1].startswith("install --no-deps -c ")
    assert pip.calls[1].endswith(' "easyphoto-missing-b"')
    held = pip.constraints[0].split()
    assert f"numpy=={importlib.metadata.version('numpy')}" in held


def test_requirements_with_the_same_flags_go_in_one_pip_call(installer):
    text = "easyphoto-missing-a\neasyphoto-missing-b>=2\n"
    plan = installer.plan_install(installer.parse_requirements(text), {})
    pip = RecordingPip()
    installer.install(plan, {}, pip, log=lambda m: None)
    assert len(pip.calls) == 1
    assert pip.calls[0].endswith('"easyphoto-missing-a" "easyphoto-missing-b>=2"')


def test_failed_install_is_reported_with_the_manual_command(installer):
    text = "easyphoto-surely-missing-a --no-deps\neasyphoto-surely-missing-b\n"
    plan = installer.plan_install(installer.parse_requirements(text), {})
    pip, messages = RecordingPip(fail_on="missing-a"), []
    failed = installer.install(plan, {}, pip, messages.append)
    assert failed == ["easyphoto-surely-missing-a"]
    assert len(pip.calls) == 2  # one failure does not stop the others
    assert "no matching distribution" in messages[0]
    assert (f'"{sys.executable}" -m pip install --no-deps -c "HELD.txt" '
            f'"easyphoto-surely-missing-a"') in messages[0]


def test_real_pip_cannot_move_a_held_package(installer, tmp_path):
    """The constraints file is what stops pip: ask real pip to move numpy under it."""
    held = tmp_path / "held.txt"
    held.write_text(installer.held_constraints(installer.installed_distributions()))
    other = "1.26.4" if importlib.metadata.version("numpy") != "1.26.4" else "1.26.3"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "-c", str(held),
         f"numpy=={other}"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "conflict" in (result.stdout + result.stderr).lower()


def test_nothing_missing_and_nothing_changed_is_the_fast_path(installer, tmp_path, monkeypatch):
    monkeypatch.setattr(installer, "PROOF_STAMP", tmp_path / "stamp.json")
    proofs = []
    monkeypatch.setattr(installer, "prove_imports", lambda log: proofs.append(1) or True)
    monkeypatch.setattr(installer, "plan_install", lambda r, i: installer.Plan([], []))
    pip = RecordingPip()
    assert installer.main(pip, skip_install=False, log=lambda m: None) == 0
    assert proofs == [1]  # first start: no proof yet
    assert installer.main(pip, skip_install=False, log=lambda m: None) == 0
    assert proofs == [1] and pip.calls == []  # proven, unchanged: no subprocess
    monkeypatch.setattr(installer, "installed_distributions",
                        lambda: {"some-new-host-package": "1.0"})
    installer.main(pip, skip_install=False, log=lambda m: None)
    assert proofs == [1, 1]  # the host's packages changed: prove again


def test_skip_install_installs_nothing_and_says_what_is_missing(installer, monkeypatch):
    monkeypatch.setattr(installer, "installed_distributions", lambda: {})
    monkeypatch.setattr(installer.importlib.util, "find_spec", lambda name: None)
    pip, messages = RecordingPip(), []
    assert installer.main(pip, skip_install=True, log=messages.append) == 0
    assert pip.calls == [] and "diffusers" in messages[0] and "--skip-install" in messages[0]


def test_failed_import_is_reported_with_package_error_and_fix(installer, monkeypatch):
    monkeypatch.setattr(installer, "installed_distributions",
                        lambda: {"transformers": "4.30.2", "diffusers": "0.37.1"})
    fix = installer._fix_for("diffusers")
    assert '-m pip install "diffusers<0.36,>=0.27" --force-reinstall --no-deps' in fix


def test_environment_check_reports_the_cause_not_the_wrapper(monkeypatch):
    def broken(name):
        raise RuntimeError("Failed to import diffusers.models.autoencoders.autoencoder_kl because"
                           " of the following error (look up to see its traceback):\ncannot "
                           "import name 'Dinov2WithRegistersConfig' from 'transformers'")

    monkeypatch.setattr(environment.importlib, "import_module", broken)
    failure = environment.run_check(environment.ImportCheck("diffusers", "diffusers", (), "x"))
    assert failure.error == "cannot import name 'Dinov2WithRegistersConfig' from 'transformers'"
    assert failure.version == importlib.metadata.version("diffusers")
    assert "diffusers" in failure.describe() and "Dinov2WithRegistersConfig" in failure.describe()


def test_environment_check_finds_a_missing_name():
    check = environment.ImportCheck("numpy", "numpy", ("surely_not_a_numpy_name",), "x")
    assert environment.run_check(check).module == "numpy"
    assert environment.run_check(environment.ImportCheck("numpy", "numpy", ("zeros",))) is None


def test_this_environment_imports_everything_easyphoto_runs():
    result = subprocess.run([sys.executable, "-m", "easyphoto_core.environment", "--json", "--ui"],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr
