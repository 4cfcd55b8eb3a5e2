"""Starting train and generate jobs for the UI and the API (the CLI runs the same steps inline).

Everything a request needs is checked before the job is queued, so a bad request is a clear
error at once, not a failed job later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from easyphoto_core.context import StudioContext
from easyphoto_core.jobs import JobCancelled, JobHandle, JobRecord
from easyphoto_core.params import GenerateParams, TrainParams
from easyphoto_core.workspace import atomic_save_with


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


def face_models(context: StudioContext) -> Any:
    """The face models, loaded once per studio (the context owns them)."""
    if "face_models" not in context.resources:
        from easyphoto_core.faces.chooser import FaceModels
        from easyphoto_core.weights import WeightPaths

        weights_dir = context.settings.weights_dir
        paths = WeightPaths.standalone(root=weights_dir) if weights_dir else None
        context.resources["face_models"] = FaceModels.load(paths, load_pose=True)
    return context.resources["face_models"]


def start_training(context: StudioContext, user_id: str, photos: list[Any],
                   params: TrainParams) -> JobRecord:
    """Queue preprocess + training of `user_id` from `photos` (paths or InputPhoto)."""
    from easyphoto_core.training.job import job_for_user

    user = context.workspace.user(user_id)
    base = _base_model(context)
    if not photos:
        raise ValueError("No photos: upload 5-20 photos of the person.")

    def work(handle: JobHandle) -> dict[str, Any]:
        from easyphoto_core.preprocess import preprocess_photos
        from easyphoto_core.training.runner import raise_for_outcome, run_trainer

        handle.report(stage="preprocess")
        report = preprocess_photos(photos, user, params, face_models(context))
        handle.check_cancelled()
        job = job_for_user(user, base_model=base, params=params, device=context.settings.device,
                           lora_copy_dirs=tuple(context.settings.lora_copy_dirs),
                           weights_dir=context.settings.weights_dir)
        job.cancel_file.unlink(missing_ok=True)
        handle.on_cancel(lambda: _touch(job.cancel_file))
        settings = context.settings
        if settings.before_training is not None:
            settings.before_training()  # e.g. the host moves its model off the GPU
        try:
            outcome = run_trainer(job, user.jobs_dir / "train.json",
                                  on_event=lambda event: _report_training(handle, event))
        finally:
            if settings.after_training is not None:
                settings.after_training()
        if outcome.cancelled:
            raise JobCancelled("training cancelled; the last checkpoint is kept")
        done = raise_for_outcome(outcome)
        return {"lora": done["lora_path"], "lora_copies": done["lora_copies"],
                "score": done["score"], "preprocess": report.summary()}

    return context.jobs.submit("train", [user.user_id], work)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("cancel")


def _report_training(handle: JobHandle, event: dict[str, Any]) -> None:
    if event["event"] == "step":
        handle.report(stage="train", step=event["step"], total=event["total_steps"],
                      loss=event["loss"], eta_seconds=event["eta_seconds"])
    elif event["event"] == "validation":
        handle.report(stage="validation", step=event["step"], score=event["mean_score"])


def start_generation(context: StudioContext, template: np.ndarray, user_ids: list[str],
                     params: GenerateParams) -> JobRecord:
    """Queue a portrait of `user_ids` (left to right) painted into `template`."""
    pipeline = portrait_pipeline(context)
    pipeline.check_inputs(template, user_ids, params)  # errors now, not in the job

    def work(handle: JobHandle) -> dict[str, Any]:
        result = pipeline(template, user_ids, params,
                          callback=lambda event: handle.report(**event),
                          interrupt=lambda: handle.cancelled)
        path = context.workspace.root / "outputs" / f"{handle.record.id}.png"
        atomic_save_with(path, lambda tmp: _save_png(tmp, result.image))
        return {"image": str(path), "faces": [
            {"user_id": f.user_id, "box": list(f.box),
             "score": None if f.identity is None else round(f.identity.score, 4)}
            for f in result.faces]}

    return context.jobs.submit("generate", list(user_ids), work)


def portrait_pipeline(context: StudioContext) -> Any:
    """The portrait pipeline on the host's backend, or on diffusers with models cached by the
    context."""
    from easyphoto_core.pipeline.portrait import PortraitPipeline

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


def _save_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(image).save(path, format="PNG")
