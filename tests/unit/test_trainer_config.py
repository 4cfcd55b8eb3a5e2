"""The trainer's config file is (de)serialised by the params machinery: what the core writes the
trainer reads back as the same config, under pydantic 1.10 (A1111) and 2 alike."""

from __future__ import annotations

import json

import pytest

from easyphoto_core.params import TrainParams, parse_params
from easyphoto_core.trainer_process.config import (
    TrainerConfig,
    TrainerConfigError,
    config_for_user,
    parse_config,
)
from easyphoto_core.workspace import Workspace


@pytest.fixture()
def written(tmp_path) -> TrainerConfig:
    workspace = Workspace(tmp_path / "ws")
    user = workspace.user("ann")
    user.dataset_dir.mkdir(parents=True)
    base = tmp_path / "base.safetensors"
    base.write_bytes(b"not read here")
    return config_for_user(user, base_model=base, params=parse_params(TrainParams, {"rank": 8}),
                           lora_copy_dirs=(tmp_path / "Lora",), workspace=workspace.root,
                           not_before=1700000000.5)


def test_what_the_core_writes_the_trainer_reads_back(written, tmp_path):
    path = tmp_path / "train.json"
    written.save(path)
    text = json.loads(path.read_text())
    assert text["lora_copy_dirs"] == [str(tmp_path / "Lora")] and text["params"]["rank"] == 8
    assert parse_config(text) == written
    assert written.user_files.lora_file == written.output_dir / "easyphoto_ann.safetensors"
    assert written.dataset.embeddings == written.dataset_dir / "embeddings.npy"


def test_the_config_is_frozen(written):
    with pytest.raises((TypeError, ValueError)):  # pydantic 1: TypeError; 2: ValidationError
        written.resume = True


@pytest.mark.parametrize(("change", "words"), [
    ({"lora_copy_dirs": "/tmp"}, "field 'lora_copy_dirs' must be a list of folders, got text"),
    ({"not_before": "soon"}, "field 'not_before' must be a number, got text"),
    ({"resume": 1}, "field 'resume' must be true or false, got a number 1"),
    ({"params": {"rank": "big"}}, "field 'params': Invalid TrainParams: rank (Rank)"),
])
def test_a_mistyped_field_is_named_with_what_it_must_be(written, change, words):
    with pytest.raises(TrainerConfigError) as error:
        parse_config({**written.to_dict(), **change})
    assert str(error.value).startswith(words), str(error.value)
