"""Starting train and generate jobs for the UI and the API (the CLI runs the same steps inline).

Everything a request needs is checked before the job is queued, so a bad request is a clear
error at once, not a failed job later. The request's files are stored with the job (jobs.py), and
the work is rebuilt from them by the runners registered in `attach`, so a queued job survives a
restart.

A training builds the user's next dataset, checkpoints and LoRA in `<user>/.train-<job>/` and
swaps them in only when it succeeds (workspace.commit_training): until then the user's current
LoRA, reference, face-id image, dataset and report stay exactly as they were.
"""

from __future__ import annotations

import io
import re
import shutil
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from easyphoto_core import infotext
from easyphoto_core.context import StudioContext
from easyphoto_core.images import DecodeLimits
from easyphoto_core.jobs import JobCancelled, JobHandle, JobRecord, job_summary
from easyphoto_core.params import (
    GenerateParams,
    TrainParams,
    field_specs,
    params_to_dict,
    parse_params,
)
from easyphoto_core.pipeline.portrait import PortraitPipeline
from easyphoto_core.preprocess import InputPhoto, PreprocessError, preprocess_photos
from easyphoto_core.trainer_process.config import config_for_user
from easyphoto_core.trainer_process.progress import GenerationProgress, TrainingProgress
from easyphoto_core.trainer_process.runner import raise_for_outcome, run_trainer
from easyphoto_core.workspace import (
    UserFiles,
    UserIdError,
    Workspace,
    atomic_save_with,
    atomic_write_bytes,
    commit_training,
    discard_staging,
    recover_commits,
)

if TYPE_CHECKING:  # loaded on first use (face_models below)
    from easyphoto_core.faces import FaceModels

MAX_PHOTOS = 50
TRAINER_LOG = "trainer.log"
_ATTACH_LOCK = threading.Lock()
_SUBMIT_LOCK = threading.Lock()  # the case-collision check and the submission go together


class StudioNotReady(ValueError):
    """The studio lacks a setting a job needs; the message says which and how to set it."""


def _base_model(context: StudioContext) -> Path:
    base = context.settings.current_base_model()
    if base is None:
        raise StudioNotReady("No base model is set: start the studio with --base-model "
                             "PATH/TO/sd15.safetensors (in the WebUI: load an SD1.5 checkpoint).")
    if not base.is_file():
        raise StudioNotReady(f"The base model {base} does not exist.")
    return base


def face_models(context: StudioContext) -> FaceModels:
    """The face models, loaded once per studio (the context owns them)."""
    from easyphoto_core.faces.chooser import FaceModels
    from easyphoto_core.weights import WeightPaths

    backend = context.settings.option("face_backend")
    keep = context.settings.option("keep_face_models")  # else this job's, freed after it
    cached = context.resources.get("face_models")
    if keep and cached is not None and context.resources.get("face_backend") == backend:
        return cached
    context.resources.pop("face_models", None)
    weights_dir = context.settings.weights_dir
    paths = WeightPaths.standalone(root=weights_dir) if weights_dir else None
    models = FaceModels.load(paths, load_pose=True, backend=backend)
    if keep:
        context.resources.update(face_models=models, face_backend=backend)
    return models


def attach(context: StudioContext) -> None:
    """Register the train and generate runners with the context's job queue (once): jobs queued
    before a restart start running. Also finishes a LoRA swap a crash interrupted."""
    with _ATTACH_LOCK:
        if context.resources.get("runners_attached"):
            return
        context.resources["runners_attached"] = True
    for user_id in context.workspace.user_ids():
        user = context.workspace.user(user_id)
        if recover_commits(user):
            copy_lora(user, context.settings.lora_copy_dirs)
    context.jobs.register("train", lambda handle: _run_training(context, handle))
    context.jobs.register("generate", lambda handle: _run_generation(context, handle))


def jobs_overview(context: StudioContext, *, limit: int = 50, active: bool = False
                  ) -> list[dict[str, Any]]:
    """Recent and running jobs, newest first, in the short form (jobs.job_summary)."""
    return [job_summary(record) for record in context.jobs.list(limit=limit, active=active)]


# --- training ---------------------------------------------------------------------------------


def start_training(context: StudioContext, user_id: str, photos: list[Any],
                   params: TrainParams) -> JobRecord:
    """Queue preprocess + training of `user_id` from `photos`: paths, InputPhoto, or
    (name, binary file) pairs; they are copied into the job's folder before this returns."""
    attach(context)
    user = context.workspace.user(user_id)
    _base_model(context)
    if not photos:
        raise ValueError("No photos: upload 5-20 photos of the person.")
    if len(photos) > MAX_PHOTOS:
        raise ValueError(f"{len(photos)} photos: at most {MAX_PHOTOS} (5-20 is best).")
    files, names = {}, []
    for index, photo in enumerate(photos):
        name, source = _photo_source(photo, index)
        files[f"photos/{index:03d}/{name}"] = source
        names.append(name)
    inputs = {"user_id": user.user_id, "params": params_to_dict(params), "photos": names}
    with _SUBMIT_LOCK:
        _refuse_case_twin(context, user.user_id)
        return context.jobs.submit("train", [user.user_id], inputs=inputs, files=files,
                                   max_file_bytes=DecodeLimits().max_bytes)


def _photo_source(photo: Any, index: int) -> tuple[str, Any]:
    if isinstance(photo, InputPhoto):
        return _safe_name(photo.name, index), photo.data
    if isinstance(photo, tuple):
        name, handle = photo
        return _safe_name(name, index), handle
    return _safe_name(Path(photo).name, index), Path(photo)


def _safe_name(name: str | None, index: int) -> str:
    """A file name for the job's folder that keeps the user's name where it is harmless."""
    cleaned = re.sub(r"[^A-Za-z0-9._ -]", "_", Path(name or "").name).strip(" .")[:100]
    return cleaned or f"photo{index}"


def _refuse_case_twin(context: StudioContext, user_id: str) -> None:
    context.workspace.new_user(user_id)  # an existing folder differing by case
    for record in context.jobs.list(limit=1000, active=True):
        other = record.user_ids[0] if record.kind == "train" and record.user_ids else None
        if other and other != user_id and other.lower() == user_id.lower():
            raise UserIdError(f"User id {user_id!r} differs only by case from {other!r}, whose "
                              f"training is {record.state} (job {record.id}): on Windows and "
                              "macOS they would be one folder. Use the same spelling, or pick "
                              "another id.")


def stored_params(model: type, data: dict[str, Any]) -> Any:
    """The params a job was queued with, read by this version: a field an upgrade removed
    (between a crash and the restart) is dropped instead of failing the job."""
    known = field_specs(model)
    return parse_params(model, {key: value for key, value in data.items() if key in known})


def _run_training(context: StudioContext, handle: JobHandle) -> dict[str, Any]:
    inputs = handle.record.inputs
    params = stored_params(TrainParams, inputs["params"])
    user = context.workspace.user(inputs["user_id"])
    photos = sorted((handle.input_dir / "photos").glob("*/*"))
    session = context.settings.training_session
    with session(handle) if session is not None else nullcontext():
        return _train_user_job(context, handle, user, photos, params)


def _train_user_job(context: StudioContext, handle: JobHandle, user: UserFiles,
                    photos: list[Path], params: TrainParams) -> dict[str, Any]:
    return train_user(
        context.workspace, user, photos, params, base_model=_base_model(context),
        face_models=lambda: face_models(context), device=context.settings.device,
        lora_copy_dirs=context.settings.lora_copy_dirs, weights_dir=context.settings.weights_dir,
        job_id=handle.record.id, work_dir=handle.input_dir, handle=handle,
        resume=handle.resuming, before=context.settings.before_training,
        after=context.settings.after_training)


def train_user(workspace: Workspace, user: UserFiles, photos: list[Any], params: TrainParams, *,
               base_model: Path, face_models: Callable[[], FaceModels], device: str,
               lora_copy_dirs: list[Path],
               weights_dir: Path | None, job_id: str, work_dir: Path, handle: Any,
               resume: bool = False, before: Any = None, after: Any = None,
               on_event: Any = None) -> dict[str, Any]:
    """Preprocess + train `user` beside their current files, then swap the result in.

    `handle` is a JobHandle (or anything with report/check_cancelled/on_cancel/cancelled);
    `face_models` a function returning the loaded face models (only called when preprocessing).
    Raises JobCancelled, or the error that stopped the run; the user's current files are
    untouched unless it returns.
    """
    stage = user.staging(job_id)
    resume = resume and _has_checkpoints(stage)
    progress = TrainingProgress(handle, validation=params.validation,
                                fusion=params.lora_selection == "fusion")
    report = None
    if not resume:
        progress.preprocess(0, len(photos), "checking the photos")
        try:
            report = preprocess_photos(photos, stage, params, face_models(),
                                       progress=progress.preprocess)
        except PreprocessError as error:  # the UI still shows why each photo was dropped
            progress.photos(error.report)
            raise
        progress.photos(report)
    handle.check_cancelled()
    config = config_for_user(stage, base_model=base_model, params=params, device=device,
                             resume=resume, weights_dir=weights_dir, workspace=workspace.root,
                             not_before=time.time())
    config.cancel_file.unlink(missing_ok=True)  # a cancel asked before this run does not count
    if before is not None:
        before()  # e.g. the host moves its model off the GPU
    progress.loading()

    def event(item: dict[str, Any]) -> None:
        progress.event(item)
        if item.get("event") == "checkpoint":
            handle.report(checkpoint_step=item["step"])
        elif item.get("event") == "start":  # which process trains, for whoever has to find it
            handle.report(trainer_pid=item.get("pid"), start_step=item.get("start_step"))
        if on_event is not None:
            on_event(item)

    try:
        config.save(work_dir / "train.json")  # not_before is now: a later cancel file counts
        handle.on_cancel(lambda: _touch(config.cancel_file))
        outcome = run_trainer(config, work_dir / "train.json", on_event=event,
                              log_file=work_dir / TRAINER_LOG)
    finally:
        if after is not None:
            after()
    if outcome.cancelled:
        step = handle.record.progress.get("checkpoint_step") if hasattr(handle, "record") else None
        kept = f"the checkpoint of step {step} is kept" if step else "no checkpoint was reached"
        raise JobCancelled(f"training stopped; {kept} and the user's current LoRA is unchanged "
                           "(Resume continues)")
    done = raise_for_outcome(outcome)
    _retarget_report(stage, user)
    commit_training(user, stage)
    discard_staging(user)  # older interrupted trainings of this user would not match any more
    copies = copy_lora(user, lora_copy_dirs)
    summary = report.summary() if report is not None else "(resumed: photos checked before)"
    return {"lora": str(user.lora_file), "lora_copies": [str(c) for c in copies],
            "score": done["score"], "preprocess": summary, "lora_name": user.lora_name,
            "selected": done.get("selected", []), "fusion_error": done.get("fusion_error"),
            "face_id": str(user.face_id_image) if user.face_id_image.is_file() else None}


def _has_checkpoints(stage: UserFiles) -> bool:
    return stage.checkpoints_dir.is_dir() and any(stage.checkpoints_dir.glob("step-*.safetensors"))


def _retarget_report(stage: UserFiles, user: UserFiles) -> None:
    """The report names files by where they will be after the swap."""
    path = stage.training_report
    if path.is_file():
        text = path.read_text(encoding="utf-8").replace(str(stage.root), str(user.root))
        atomic_write_bytes(path, text.encode("utf-8"))


def copy_lora(user: UserFiles, folders: list[Path]) -> list[Path]:
    """The user's LoRA copied (atomically) into each folder, e.g. the host's Lora folder."""
    copies = []
    for folder in folders:
        target = Path(folder) / user.lora_file.name
        atomic_save_with(target, lambda tmp: shutil.copyfile(user.lora_file, tmp))
        copies.append(target)
    return copies


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("cancel")


# --- generation -------------------------------------------------------------------------------


def start_generation(context: StudioContext, template: np.ndarray, user_ids: list[str],
                     params: GenerateParams) -> JobRecord:
    """Queue a portrait of `user_ids` (left to right) painted into `template`."""
    attach(context)
    pipeline = portrait_pipeline(context)
    pipeline.check_inputs(template, user_ids, params)  # errors now, not in the job
    png = io.BytesIO()
    _save_png(png, template)
    return context.jobs.submit("generate", list(user_ids),
                               inputs={"user_ids": list(user_ids),
                                       "params": params_to_dict(params)},
                               files={"template.png": png.getvalue()})


def _run_generation(context: StudioContext, handle: JobHandle) -> dict[str, Any]:
    from PIL import Image

    inputs = handle.record.inputs
    params = stored_params(GenerateParams, inputs["params"])
    with Image.open(handle.input_dir / "template.png") as opened:
        template = np.asarray(opened.convert("RGB"))
    pipeline = portrait_pipeline(context)
    handle.report(stage="painting", step=0, total=0)  # models load before the first step
    result = pipeline(template, inputs["user_ids"], params,
                      callback=GenerationProgress(handle),
                      interrupt=lambda: handle.cancelled)
    path = context.workspace.root / "outputs" / f"{handle.record.id}.png"
    text = infotext.for_portrait(params, result, workspace=context.workspace,
                                 base_model=context.settings.current_base_model())
    infotext.save_png(path, result.image, text)  # the host's PNG Info reads it back
    if context.settings.save_portrait is not None:  # the host's outputs folder too
        context.settings.save_portrait(result.image, text, params)
    return {"image": str(path), "infotext": text,  # for the host's Send to img2img
            "notes": list(getattr(result, "notes", []) or []), "faces": [
        {"user_id": f.user_id, "box": list(f.box),
         "score": None if f.identity is None else round(f.identity.score, 4)}
        for f in result.faces]}


def portrait_pipeline(context: StudioContext) -> Any:
    """The portrait pipeline on the host's backend, or on diffusers with models cached by the
    context."""
    if context.settings.generation_backend is not None:
        backend = context.settings.generation_backend()
    else:
        backend = _diffusers_backend(context)
    return PortraitPipeline(backend=backend, face_models=face_models(context),
                            workspace=context.workspace)


def _diffusers_backend(context: StudioContext) -> Any:
    import torch

    from easyphoto_core.pipeline.diffusers_backend import DiffusersBackend, ModelCache

    if "model_cache" not in context.resources:
        requested = context.settings.device
        if requested == "auto":
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(requested)
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        context.resources["model_cache"] = ModelCache(device=device, dtype=dtype)
    return DiffusersBackend(base_model=_base_model(context),
                            controlnet_dirs=context.settings.controlnet_dirs,
                            cache=context.resources["model_cache"])


def _save_png(path: Any, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG")
