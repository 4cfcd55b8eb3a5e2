from __future__ import annotations

import os

import pytest

from easyphoto_core.workspace import (
    UserIdError,
    Workspace,
    atomic_save_with,
    atomic_write_bytes,
    atomic_write_json,
    validate_user_id,
)


@pytest.mark.parametrize("user_id", ["a", "alice", "Bob_2", "x-y", "A" * 64, "0"])
def test_valid_user_ids_are_accepted(user_id):
    assert validate_user_id(user_id) == user_id


@pytest.mark.parametrize(
    ("user_id", "problem"),
    [
        ("../x", "contains '.', '/'"),
        ("a/b", "contains '/'"),
        ("a:b", "contains ':'"),
        ("<lora:x>", "contains ':', '<', '>'"),
        ("", "is empty"),
        ("a" * 65, "is 65 characters long"),
        ("a b", "contains ' '"),
        ("é", "contains 'é'"),
    ],
)
def test_bad_user_ids_are_refused_with_the_reason(user_id, problem):
    with pytest.raises(UserIdError) as caught:
        validate_user_id(user_id)
    assert problem in str(caught.value)
    assert "letters, digits" in str(caught.value)


def test_bad_user_id_touches_no_file(tmp_path):
    workspace = Workspace(tmp_path / "ws")
    with pytest.raises(UserIdError):
        workspace.user("../escape")
    assert not (tmp_path / "ws").exists()
    assert not (tmp_path / "escape").exists()


def test_user_paths_live_under_the_workspace(tmp_path):
    files = Workspace(tmp_path).user("alice")
    for path in (files.lora_file, files.reference_photo, files.dataset_dir, files.jobs_dir):
        assert path.resolve().is_relative_to(tmp_path.resolve() / "users" / "alice")
    assert files.lora_file.name == "easyphoto_alice.safetensors"


def test_user_ids_lists_folders_and_trained_ones(tmp_path):
    workspace = Workspace(tmp_path)
    alice = workspace.user("alice")
    alice.root.mkdir(parents=True)
    atomic_write_bytes(alice.lora_file, b"x")
    atomic_write_bytes(alice.reference_photo, b"x")
    workspace.user("bob").root.mkdir(parents=True)
    (workspace.users_dir / "not valid").mkdir()
    assert workspace.user_ids() == ["alice", "bob"]
    assert workspace.trained_user_ids() == ["alice"]


def test_atomic_write_replaces_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "report.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert target.read_text().strip().startswith("{")
    assert '"a": 2' in target.read_text()
    assert os.listdir(target.parent) == ["report.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "lora.safetensors"
    atomic_write_bytes(target, b"good")

    def crash_midway(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_save_with(target, crash_midway)
    assert target.read_bytes() == b"good"
    assert os.listdir(tmp_path) == ["lora.safetensors"]
