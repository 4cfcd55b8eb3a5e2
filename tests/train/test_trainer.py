"""The trainer on the tiny model: in-process maths, and `python -m easyphoto_train` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from easyphoto_core.params import TrainParams, parse_params
from easyphoto_core.trainer_process.config import TrainerConfig
from easyphoto_core.trainer_process.events import ExitCode, parse_event

REPO = Path(__file__).resolve().parents[2]
FAST = {"resolution": 256, "rank": 4, "network_alpha": 4, "val_and_checkpointing_steps": 2,
        "max_train_steps": 4, "validation": False, "lora_selection": "best"}


def make_job(tmp_path, tiny_models, dataset, weights_dir=None, **params) -> TrainerConfig:
    return TrainerConfig(
        user_id="obama", base_model=tiny_models.checkpoint, dataset_dir=dataset,
        output_dir=tmp_path / "user", params=parse_params(TrainParams, {**FAST, **params}),
        device="cpu", lora_copy_dirs=(tmp_path / "host_lora",),
        cancel_file=tmp_path / "cancel", weights_dir=weights_dir,
    )


def start_trainer(job: TrainerConfig, tmp_path: Path, *extra: str) -> subprocess.Popen:
    job_file = tmp_path / "job.json"
    job.save(job_file)
    return subprocess.Popen([sys.executable, "-m", "easyphoto_train", "--config", str(job_file),
                             *extra], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def events_of(process: subprocess.Popen, on_event=None) -> list[dict]:
    events = []
    for line in process.stdout:
        event = parse_event(line)
        if event:
            events.append(event)
            if on_event:
                on_event(event)
    process.wait(timeout=300)
    return events


def fixed_batch_losses(loop, steps: int) -> list[float]:
    """Loss on one fixed batch across `steps` optimizer steps (the generator replays the batch)."""
    state = loop.generator.get_state()
    losses = []
    for _ in range(steps):
        loop.generator.set_state(state)
        losses.append(loop.step())
    return losses


def test_loss_falls_on_a_fixed_batch(tiny_models, tiny_dataset, tmp_path):
    from easyphoto_train.engine import LoRATrainingLoop, encode_latents
    from easyphoto_train.setup import load_dataset_images, load_training_models

    # one sample per step: the same maths as a batch of 4, a quarter of the CPU time
    job = make_job(tmp_path, tiny_models, tiny_dataset, learning_rate=1e-2, rank=8,
                   gradient_accumulation_steps=1)
    models, components = load_training_models(job, device=torch.device("cpu"),
                                              dtype=torch.float32)
    latents = encode_latents(components.vae, load_dataset_images(tiny_dataset, 256),
                             device=torch.device("cpu"), dtype=torch.float32)
    tokens = components.tokenizer("easyphoto_face", padding="max_length", max_length=77,
                                  return_tensors="pt").input_ids
    loop = LoRATrainingLoop(models, latents, tokens, job.params, micro_batch=1, seed=0)
    losses = fixed_batch_losses(loop, 8)
    assert losses[-1] < 0.9 * losses[0], losses
    assert sum(b < a for a, b in zip(losses, losses[1:], strict=False)) >= 6, losses  # falls step after step


def test_subprocess_trains_and_writes_a_kohya_lora(tiny_models, tiny_dataset, tmp_path):
    job = make_job(tmp_path, tiny_models, tiny_dataset)
    process = start_trainer(job, tmp_path)
    events = events_of(process)
    assert process.returncode == ExitCode.OK, process.stderr.read()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 4]
    assert all(e["loss"] > 0 for e in events if e["event"] == "step")
    done = events[-1]
    final = Path(done["lora_path"])
    assert final == job.output_dir / "easyphoto_obama.safetensors"
    assert (tmp_path / "host_lora" / final.name).read_bytes() == final.read_bytes()
    from safetensors import safe_open

    with safe_open(str(final), framework="pt") as handle:
        keys, metadata = list(handle.keys()), handle.metadata()
        dtypes = {handle.get_tensor(k).dtype for k in keys if not k.endswith(".alpha")}
    assert dtypes == {torch.float16}  # kohya's save precision; checkpoints stay float32
    assert any(k.startswith("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q")
               for k in keys)
    assert any(k.startswith("lora_te_text_model_encoder_layers_0_self_attn_q_proj") for k in keys)
    assert metadata["ss_network_dim"] == "4" and metadata["easyphoto_user_id"] == "obama"
    report = json.loads((job.output_dir / "training_report.json").read_text())
    assert report["selected_steps"] == [4]
    # after selection: the selected checkpoint's LoRA only, no optimizer state (~2x its size)
    assert sorted(p.name for p in job.checkpoints_dir.glob("step-*")) == [
        "step-000004.safetensors"]


def test_cancel_keeps_the_last_checkpoint_and_resume_finishes(tiny_models, tiny_dataset,
                                                              tmp_path):
    job = make_job(tmp_path, tiny_models, tiny_dataset, max_train_steps=6)

    def cancel_after_first_checkpoint(event):
        if event["event"] == "checkpoint":
            job.cancel_file.write_text("cancel")

    process = start_trainer(job, tmp_path)
    events = events_of(process, cancel_after_first_checkpoint)
    assert process.returncode == ExitCode.CANCELLED
    # the file appears while step 3 may already be running: it stops before step 4
    assert events[-1]["event"] == "cancelled" and events[-1]["step"] in (2, 3)
    assert events[-1]["checkpoint"].endswith("step-000002.safetensors")
    assert not (job.output_dir / "easyphoto_obama.safetensors").exists()
    assert (job.checkpoints_dir / "step-000002.safetensors").is_file()

    job.cancel_file.unlink()
    resumed = start_trainer(job, tmp_path, "--resume")
    events = events_of(resumed)
    assert resumed.returncode == ExitCode.OK, resumed.stderr.read()
    assert events[0]["start_step"] == 2
    assert [e["step"] for e in events if e["event"] == "step"] == [3, 4, 5, 6]
    assert not list(job.checkpoints_dir.glob("*.optim.safetensors"))  # a finished run: none


def test_sigterm_stops_within_a_step(tiny_models, tiny_dataset, tmp_path):
    job = make_job(tmp_path, tiny_models, tiny_dataset, max_train_steps=200,
                   val_and_checkpointing_steps=100)
    process = start_trainer(job, tmp_path)
    seen = []

    def terminate_on_second_step(event):
        seen.append(event)
        if event["event"] == "step" and event["step"] == 2:
            process.terminate()

    started = time.monotonic()
    events = events_of(process, terminate_on_second_step)
    assert process.returncode == ExitCode.CANCELLED
    assert events[-1]["event"] == "cancelled" and events[-1]["step"] <= 3
    assert time.monotonic() - started < 120


def test_bad_job_is_refused_with_exit_code_2(tmp_path):
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"user_id": "../x", "base_model": "a", "dataset_dir": "b",
                                    "output_dir": "c"}))
    result = subprocess.run([sys.executable, "-m", "easyphoto_train", "--config", str(job_file)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == ExitCode.BAD_CONFIG
    event = parse_event(result.stdout.strip().splitlines()[-1])
    assert event["event"] == "error" and "../x" in event["message"]


@pytest.mark.parametrize("missing", ["dataset", "checkpoint"])
def test_missing_inputs_name_the_path(tiny_models, tiny_dataset, tmp_path, missing):
    job = make_job(tmp_path, tiny_models, tiny_dataset)
    if missing == "dataset":
        job = TrainerConfig(**{**job.__dict__, "dataset_dir": tmp_path / "nope"})
    else:
        job = TrainerConfig(**{**job.__dict__, "base_model": tmp_path / "nope.safetensors"})
    process = start_trainer(job, tmp_path)
    events = events_of(process)
    assert process.returncode == ExitCode.BAD_CONFIG
    assert "nope" in events[-1]["message"]


# Report what the trainer imported, at its exit (its stdout carries the events: stderr then).
IMPORTS_AT_EXIT = """
import atexit, runpy, sys
atexit.register(lambda: print("IMPORTED", *sorted(sys.modules), file=sys.stderr))
sys.argv = ["easyphoto_train", "--config", sys.argv[1]]
runpy.run_module("easyphoto_train", run_name="__main__", alter_sys=True)
"""


def test_a_validating_run_imports_neither_diffusers_nor_transformers(
        tiny_models, tiny_dataset, tmp_path, shared_models_dir):
    """Their imports were most of the trainer's start-up (easyphoto_core.sd.native says how
    much); the trainer's models, tokenizer and sampler are our own."""
    job = make_job(tmp_path, tiny_models, tiny_dataset, weights_dir=shared_models_dir,
                   validation=True, num_validation_templates=1, max_train_steps=2)
    job.save(tmp_path / "job.json")
    result = subprocess.run([sys.executable, "-c", IMPORTS_AT_EXIT, str(tmp_path / "job.json")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == ExitCode.OK, result.stderr[-3000:]
    events = [parse_event(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events if e and e["event"] == "validation"] == ["validation"]
    imported = next(line for line in result.stderr.splitlines() if line.startswith("IMPORTED"))
    heavy = {name.split(".")[0] for name in imported.split()[1:]} & {
        "diffusers", "transformers", "peft"}
    if tuple(int(x) for x in torch.__version__.split(".")[:2]) < (2, 2):  # torch 2.1's optimizer imports dynamo -> onnx -> transformers
        heavy.discard("transformers")
    assert not heavy


def test_validation_scores_each_checkpoint_and_selects_the_best(tiny_models, tiny_dataset,
                                                               tmp_path, shared_models_dir):
    job = make_job(tmp_path, tiny_models, tiny_dataset, weights_dir=shared_models_dir,
                   validation=True, num_validation_templates=1, val_and_checkpointing_steps=1,
                   max_train_steps=2, lora_selection="fusion", fusion_top_k=2)
    process = start_trainer(job, tmp_path)
    events = events_of(process)
    assert process.returncode == ExitCode.OK, process.stderr.read()
    validations = [e for e in events if e["event"] == "validation"]
    assert [v["step"] for v in validations] == [1, 2]
    for record in validations:
        assert len(record["scores"]) == 1 and Path(record["images"][0]).is_file()
    report = json.loads((job.output_dir / "training_report.json").read_text())
    assert sorted(report["selected_steps"]) == [1, 2]  # fusion of the top two
    assert report["fusion_error"] is not None and report["fusion_error"] >= 0
    # the face-id image is a validation image with a face; the tiny models' images may show
    # none, and then there is no face-id image and the report says the reference photo is used
    faceless = any("no validation image showed a face" in note for note in report["notes"])
    assert (job.output_dir / "face_id.png").is_file() != faceless
