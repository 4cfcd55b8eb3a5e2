"""One training run, start to finish: load, cache, optimise, checkpoint, validate, select, save."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from easyphoto_core.params import TRIGGER_CAPTION
from easyphoto_core.trainer_process.config import TrainerConfig, TrainerConfigError
from easyphoto_core.trainer_process.events import EventWriter
from easyphoto_core.workspace import atomic_write_json
from easyphoto_train.cancel import CancelToken
from easyphoto_train.checkpoints import (
    Checkpoint,
    CheckpointSnapshot,
    CheckpointWriter,
    HostStaging,
    list_checkpoints,
    load_optimizer_state,
    read_checkpoint_lora,
    snapshot_checkpoint,
)
from easyphoto_train.engine import LoRATrainingLoop, TrainingModels, encode_latents
from easyphoto_train.output import ValidationRecord, finish_run
from easyphoto_train.setup import (
    legacy_model_hash,
    load_dataset_images,
    load_training_models,
    prefer_flash_attention,
    resolve_device,
)


class Cancelled(Exception):
    def __init__(self, step: int, checkpoint: Checkpoint | None) -> None:
        super().__init__(f"cancelled at step {step}")
        self.step, self.checkpoint = step, checkpoint


@dataclass
class RunState:
    total_steps: int
    start_step: int
    checkpoints: list[Checkpoint]
    validations: dict[int, ValidationRecord] = field(default_factory=dict)


def run_training(config: TrainerConfig, events: EventWriter, cancel: CancelToken) -> Path:
    """Train; return the final LoRA path. Raises Cancelled, or the error that stopped it."""
    started = time.perf_counter()
    device, dtype = resolve_device(config.device, config.params.mixed_precision)
    if device.type == "cuda":
        prefer_flash_attention()
    images = load_dataset_images(config.dataset_dir, config.params.resolution)
    models, components = load_training_models(config, device=device, dtype=dtype)
    latents = encode_latents(components.vae, images, device=device, dtype=dtype)
    token_ids = components.tokenizer(
        TRIGGER_CAPTION, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    loop = LoRATrainingLoop(models, latents, token_ids, config.params,
                            micro_batch=micro_batch_size(config.params, device),
                            seed=config.params.seed)
    state = _prepare_state(config, loop, images.shape[0])
    validator = _validator(config, components, events, device=device, dtype=dtype)
    stepper = make_stepper(loop, events)  # on CUDA: warm-up + graph capture, part of start-up
    events.emit("start", total_steps=state.total_steps, start_step=state.start_step,
                photos=int(images.shape[0]), device=str(device), dtype=str(dtype).split(".")[-1],
                startup_seconds=round(time.perf_counter() - started, 2), pid=os.getpid())
    writer = CheckpointWriter(on_written=lambda checkpoint: events.emit(
        "checkpoint", step=checkpoint.step, path=str(checkpoint.lora_path)))
    try:
        _optimise(config, loop, state, events, cancel, validator, stepper, writer)
        writer.wait()  # selection reads the checkpoints back
    finally:
        writer.close()
    return finish_run(config, state.checkpoints, validations=state.validations, events=events,
                      seconds=time.perf_counter() - started,
                      base_model_hash=legacy_model_hash(config.base_model), device=device)


def _prepare_state(config: TrainerConfig, loop: LoRATrainingLoop, photo_count: int) -> RunState:
    total = config.params.optimizer_steps(photo_count)
    existing = list_checkpoints(config.checkpoints_dir)
    if config.resume and existing:
        last = existing[-1]
        if not last.optimizer_path.is_file():
            raise TrainerConfigError(
                f"Cannot resume: the checkpoint of step {last.step} has no optimizer state "
                "(the run it belongs to had finished); start a new training.")
        loop.models.network.load_state_dict_kohya(read_checkpoint_lora(last))
        load_optimizer_state(last, loop.optimizer, _parameter_names(loop.models))
        loop.step_count = last.step
        validations = load_validations(config.checkpoints_dir, upto=last.step)
        # a new seed stream for the continuation: replaying the first steps' draws adds nothing
        loop.generator.manual_seed(config.params.seed + last.step)
        return RunState(total, last.step, existing, validations)
    for stale in existing:  # a fresh run must not select a previous run's checkpoints
        stale.optimizer_path.unlink(missing_ok=True)
        stale.lora_path.unlink(missing_ok=True)
    (config.checkpoints_dir / VALIDATIONS_FILE).unlink(missing_ok=True)
    return RunState(total, 0, [])


def micro_batch_size(params, device) -> int:
    """The whole effective batch in one pass where memory allows (CUDA, not low-VRAM on CPU
    tests alike: same maths as accumulation); batch x accumulation when asked to save memory
    on CPU."""
    if device.type == "cuda" or not params.low_vram:
        return params.effective_batch_size
    return params.train_batch_size


def make_stepper(loop: LoRATrainingLoop, events: EventWriter):
    """A CUDA-graph step on CUDA; the plain loop elsewhere or if capture is impossible."""
    if loop.models.device.type != "cuda" or loop.accumulation != 1:
        return loop
    from easyphoto_train.engine import CudaGraphStep

    try:
        return CudaGraphStep(loop)
    except RuntimeError as error:  # an op that cannot be captured: slower, same training
        if "captur" not in str(error).lower():
            raise
        events.emit("note", message=f"CUDA graph capture failed ({error}); training continues "
                    "without it")
        loop.optimizer.zero_grad(set_to_none=True)
        return loop


VALIDATIONS_FILE = "validations.json"


def save_validations(directory: Path, validations: dict[int, ValidationRecord]) -> None:
    atomic_write_json(directory / VALIDATIONS_FILE, [
        {"step": v.step, "scores": v.scores, "images": v.images, "best_image": v.best_image}
        for v in validations.values()])


def load_validations(directory: Path, *, upto: int) -> dict[int, ValidationRecord]:
    """Validations of the checkpoints a resumed run keeps (those after `upto` are redone)."""
    path = directory / VALIDATIONS_FILE
    if not path.is_file():
        return {}
    records = [ValidationRecord(**item) for item in json.loads(path.read_text())]
    return {r.step: r for r in records if r.step <= upto}


def _validator(config: TrainerConfig, components, events: EventWriter, *, device, dtype):
    """The validator, or None (with a note) when validation is off or cannot run."""
    if not config.params.validation:
        return None
    if not config.dataset.embeddings.is_file():
        events.emit("note", message="validation skipped: the dataset has no identity "
                    "embeddings (re-run preprocess)")
        return None
    from easyphoto_train.validation import build_validator

    return build_validator(components=components, dataset_dir=config.dataset_dir,
                           count=config.params.num_validation_templates, device=device, dtype=dtype,
                           seed=config.params.seed, weights_dir=config.weights_dir)


def _optimise(config: TrainerConfig, loop: LoRATrainingLoop, state: RunState, events: EventWriter,
              cancel: CancelToken, validator, stepper, writer: CheckpointWriter) -> None:
    every = config.params.val_and_checkpointing_steps
    staging = HostStaging()
    timer_start, timed_steps = time.perf_counter(), 0
    while loop.step_count < state.total_steps:
        if cancel.requested:
            writer.wait()  # the checkpoint a resume starts from is complete on disk
            raise Cancelled(loop.step_count, state.checkpoints[-1] if state.checkpoints else None)
        loss = stepper.step()
        timed_steps += 1
        per_step = (time.perf_counter() - timer_start) / timed_steps
        events.emit("step", step=loop.step_count, total_steps=state.total_steps,
                    loss=round(loss, 6), seconds_per_step=round(per_step, 4),
                    eta_seconds=round(per_step * (state.total_steps - loop.step_count), 1))
        if loop.step_count % every == 0 or loop.step_count == state.total_steps:
            # validation first: its first call captures CUDA graphs, and a capture fails when
            # another thread touches CUDA meanwhile (seen with the write running beside it)
            if validator is not None:
                events.emit("validating", step=loop.step_count)
                record = validator.validate(loop.step_count, config.validation_dir)
                state.validations[loop.step_count] = record
                events.emit("validation", step=record.step, scores=record.scores,
                            mean_score=round(record.mean_score, 4), images=record.images)
            writer.wait()  # the staging buffers are free again (long since, normally)
            state.checkpoints.append(writer.submit(_snapshot(config, loop, staging)))
            if validator is not None:  # for --resume, which keeps the checkpoints' validations
                save_validations(config.checkpoints_dir, state.validations)


def _snapshot(config: TrainerConfig, loop: LoRATrainingLoop, staging: HostStaging
              ) -> CheckpointSnapshot:
    return snapshot_checkpoint(
        config.checkpoints_dir, loop.step_count, loop.models.network.state_dict_kohya(device=None),
        {"easyphoto_step": str(loop.step_count), "easyphoto_user_id": config.user_id},
        loop.optimizer, _parameter_names(loop.models), staging,
    )


def _parameter_names(models: TrainingModels) -> dict[int, str]:
    return {id(p): name for name, p in models.network.named_parameters()}
