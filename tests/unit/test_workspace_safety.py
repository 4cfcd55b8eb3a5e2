"""Ids that are safe on every system, and the transactional swap of a re-training."""

from __future__ import annotations

import hashlib
import os

import pytest

from easyphoto_core.workspace import (
    UserIdError,
    Workspace,
    commit_training,
    recover_commits,
    validate_user_id,
)


@pytest.mark.parametrize("user_id", ["CON", "nul", "Aux", "prn", "COM1", "lpt9", "com5"])
def test_windows_device_names_are_refused(user_id):
    with pytest.raises(UserIdError, match="Windows reserves"):
        validate_user_id(user_id)


@pytest.mark.parametrize("user_id", ["CONSOLE", "COM10", "LPT0", "nul_", "con-1"])
def test_names_that_only_start_like_a_device_are_fine(user_id):
    assert validate_user_id(user_id) == user_id


def test_an_id_differing_only_by_case_is_refused_naming_the_existing_one(tmp_path):
    workspace = Workspace(tmp_path)
    workspace.new_user("bob").root.mkdir(parents=True)
    with pytest.raises(UserIdError, match="'Bob' differs only by case .* 'bob'"):
        workspace.new_user("Bob")
    assert workspace.new_user("bob").user_id == "bob"  # re-training the same spelling is fine


def trained(root, version: str):
    """A user folder as a training leaves it (`version` makes its bytes differ)."""
    for name in ("dataset", "checkpoints", "validation"):
        (root / name).mkdir(parents=True)
        (root / name / "f.bin").write_text(f"{name} {version}")
    for name in ("easyphoto_ann.safetensors", "reference.png", "training_report.json"):
        (root / name).write_text(f"{name} {version}")
    if version == "old":
        (root / "face_id.png").write_text("face id old")


def digest(root) -> dict[str, str]:
    files = (p for p in sorted(root.rglob("*")) if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
            if not str(p.relative_to(root)).startswith((".train-", ".old-"))}


def test_commit_swaps_everything_and_drops_what_the_new_training_lacks(tmp_path):
    user = Workspace(tmp_path).user("ann")
    trained(user.root, "old")
    stage = user.staging("job1")
    trained(stage.root, "new")
    commit_training(user, stage)
    assert (user.root / "easyphoto_ann.safetensors").read_text().endswith("new")
    assert (user.root / "dataset" / "f.bin").read_text() == "dataset new"
    assert not (user.root / "face_id.png").exists()  # an old face-id would not match the LoRA
    assert sorted(p.name for p in user.root.iterdir()) == sorted(user.trained_items()[:-2] + (
        "training_report.json",))


@pytest.mark.parametrize("crash_after", [0, 1, 3, 6, 9])
def test_a_crash_during_the_swap_is_finished_at_the_next_start(tmp_path, monkeypatch,
                                                               crash_after):
    user = Workspace(tmp_path).user("ann")
    trained(user.root, "old")
    old = digest(user.root)
    stage = user.staging("job1")
    trained(stage.root, "new")
    expected = digest(stage.root)
    real_replace, calls = os.replace, []

    def crashing_replace(src, dst):
        if len(calls) >= crash_after:
            raise OSError("power cut")
        calls.append(src)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(OSError, match="power cut"):
        commit_training(user, stage)
    monkeypatch.setattr(os, "replace", real_replace)
    if crash_after == 0:  # the marker itself was not written: nothing changed
        assert digest(user.root) == old and not recover_commits(user)
    else:
        assert recover_commits(user)
    if crash_after:
        assert digest(user.root) == expected
        assert not list(user.root.glob(".train-*")) and not list(user.root.glob(".old-*"))
