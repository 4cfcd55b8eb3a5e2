"""Checkpoints are written on a worker thread: training goes on, errors still surface, order holds."""

from __future__ import annotations

import threading

import pytest
import torch

from easyphoto_train.checkpoints import (
    CheckpointWriter,
    HostStaging,
    list_checkpoints,
    snapshot_checkpoint,
)


def _snapshot(directory, step, parameter):
    optimizer = torch.optim.AdamW([parameter], lr=1e-3)
    parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    lora = {"lora_unet_block.lora_down.weight": parameter.detach().clone(),
            "lora_unet_block.lora_up.weight": torch.zeros(3, 2),
            "lora_unet_block.alpha": torch.tensor(2.0)}
    return snapshot_checkpoint(directory, step, lora, {"easyphoto_step": str(step)}, optimizer,
                               {id(parameter): "block"}, HostStaging())


def test_a_snapshot_keeps_the_values_of_its_step(tmp_path):
    parameter = torch.nn.Parameter(torch.randn(2, 4))
    optimizer = torch.optim.AdamW([parameter], lr=1e-3)
    parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    lora = {"lora_unet_block.lora_down.weight": parameter.detach()}  # no copy: a live view
    snapshot = snapshot_checkpoint(tmp_path, 1, lora, {}, optimizer, {id(parameter): "block"},
                                   HostStaging())
    before = snapshot.lora_tensors["lora_unet_block.lora_down.weight"].clone()
    moment = snapshot.moments["block.exp_avg"].clone()
    optimizer.step()  # the next step changes weights and moments in place
    assert torch.equal(snapshot.lora_tensors["lora_unet_block.lora_down.weight"], before)
    assert torch.equal(snapshot.moments["block.exp_avg"], moment)
    assert snapshot.optimizer_metadata["adam_steps"] == '{"block": 1.0}'


def test_training_goes_on_while_a_checkpoint_is_written_and_wait_means_on_disk(tmp_path,
                                                                              monkeypatch):
    written, release = [], threading.Event()
    writer = CheckpointWriter(on_written=lambda checkpoint: written.append(checkpoint.step))
    snapshot = _snapshot(tmp_path, 100, torch.nn.Parameter(torch.randn(2, 4)))
    original = type(snapshot).write
    monkeypatch.setattr(type(snapshot), "write", lambda self: (release.wait(5), original(self)))

    checkpoint = writer.submit(snapshot)  # returns at once: the write waits for `release`
    assert written == [] and not checkpoint.lora_path.exists()
    release.set()
    writer.wait()
    assert written == [100] and checkpoint.lora_path.is_file()
    assert checkpoint.optimizer_path.is_file()
    writer.close()


def test_a_newer_checkpoint_drops_the_older_optimizer_state_once_written(tmp_path):
    writer = CheckpointWriter(on_written=lambda checkpoint: None)
    parameter = torch.nn.Parameter(torch.randn(2, 4))
    first = writer.submit(_snapshot(tmp_path, 100, parameter))
    second = writer.submit(_snapshot(tmp_path, 200, parameter))
    writer.wait()
    assert [c.step for c in list_checkpoints(tmp_path)] == [100, 200]
    assert not first.optimizer_path.exists() and second.optimizer_path.is_file()
    writer.close()


def test_a_failed_write_is_raised_by_the_next_submit_or_wait_and_not_by_close(tmp_path):
    writer = CheckpointWriter(on_written=lambda checkpoint: None)
    parameter = torch.nn.Parameter(torch.randn(2, 4))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the checkpoints folder should be")
    writer.submit(_snapshot(blocker, 100, parameter))
    with pytest.raises(OSError):
        writer.submit(_snapshot(tmp_path, 200, parameter))
    writer.submit(_snapshot(blocker, 300, parameter))
    writer.close()  # a failing run's own error is the one reported: close raises nothing
    assert list_checkpoints(tmp_path) == []
