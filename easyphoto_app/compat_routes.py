"""sd-webui-EasyPhoto's own routes, so its clients and `api_test` scripts work unchanged.

`POST /easyphoto/easyphoto_train_forward` and `POST /easyphoto/easyphoto_infer_forward` take
EasyPhoto's JSON field names and base64 images (aigc-apps/sd-webui-EasyPhoto scripts/api.py) and
answer in its shape: `{"message"}` and `{"message", "outputs", "face_id_outputs"}`, waiting for
the job as EasyPhoto does. They run as our queued jobs behind the same authentication. Unlike
EasyPhoto, an error is also an HTTP error status (the body keeps its shape, with `detail` too),
and a field we do not know is refused by name instead of being silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from easyphoto_app.api import _job_errors
from easyphoto_app.auth import basic_auth_dependency
from easyphoto_app.localized import LocalizedRoute, header_language, request_language
from easyphoto_core.context import StudioContext
from easyphoto_core.i18n import gettext, translate_message
from easyphoto_core.images import DecodeLimits, decode_image
from easyphoto_core.params import DEFAULT_POSITIVE_PROMPT, GenerateParams, TrainParams, parse_params
from easyphoto_core.studio import start_generation, start_training

PREFIX = "/easyphoto"
TRAIN_DONE = "The training has been completed."
INFER_DONE = "Success"

# EasyPhoto's name -> ours (None: accepted for compatibility, nothing to set: the host's model
# in use, EasyPhoto's task id, its reinforcement-learning and SDXL options, lang for errors; its
# dataloader workers (latents are cached: there is no data loader), its face-crop switch (every
# face is cropped) and its score switch (scores are always returned)).
TRAIN_FIELDS: dict[str, str | None] = {
    "resolution": "resolution", "val_and_checkpointing_steps": "val_and_checkpointing_steps",
    "max_train_steps": "max_train_steps", "steps_per_photos": "steps_per_photos",
    "train_batch_size": "train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "dataloader_num_workers": None, "learning_rate": "learning_rate",
    "rank": "rank", "network_alpha": "network_alpha", "validation": "validation",
    "skin_retouching_bool": "skin_retouching", "crop_ratio": "crop_ratio",
    "user_id": None, "instance_images": None, "sd_model_checkpoint": None, "id_task": None,
    "enable_rl": None, "max_rl_time": None, "timestep_fraction": None, "args": None,
    "train_mode_choose": None, "lang": None,
}
INFER_FIELDS: dict[str, str | None] = {
    "first_diffusion_steps": "first_diffusion_steps",
    "first_denoising_strength": "first_denoising_strength",
    "second_diffusion_steps": "second_diffusion_steps",
    "second_denoising_strength": "second_denoising_strength", "seed": "seed",
    "crop_face_preprocess": None,
    "before_face_fusion_ratio": "face_fusion_ratio_before",
    "after_face_fusion_ratio": "face_fusion_ratio_after",
    "apply_face_fusion_before": "apply_face_fusion_before",
    "apply_face_fusion_after": "apply_face_fusion_after",
    "color_shift_middle": "color_shift_middle", "color_shift_last": "color_shift_last",
    "display_score": None, "background_restore": "background_restore",
    "background_restore_denoising_strength": "background_restore_denoising",
    "user_ids": None, "init_image": None, "selected_template_images": None,
    "uploaded_template_images": None, "additional_prompt": None, "sd_model_checkpoint": None,
    "super_resolution": None, "sd_xl_input_prompt": None, "sd_xl_resolution": None,
    "tabs": None, "lang": None,
}


class CompatError(ValueError):
    """A request EasyPhoto's clients got wrong; the message names the field."""


def translate_fields(datas: dict[str, Any], names: dict[str, str | None]) -> dict[str, Any]:
    """EasyPhoto's fields as our params; unknown fields refused, each named."""
    unknown = sorted(set(datas) - set(names))
    if unknown:
        raise CompatError(f"Unknown field(s) {', '.join(unknown)}: the fields are "
                          f"{', '.join(sorted(names))}.")
    return {names[key]: value for key, value in datas.items() if names[key]}


def decode_base64_image(text: Any, what: str) -> bytes:
    """The bytes of a base64 image (a `data:image/...;base64,` prefix allowed), size-checked."""
    if not isinstance(text, str) or not text:
        raise CompatError(f"{what} must be a base64-encoded image.")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    limit = DecodeLimits().max_bytes
    if len(text) > limit * 4 // 3 + 4:
        raise CompatError(f"{what} is larger than {limit >> 20} MB: use a smaller photo.")
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise CompatError(f"{what} is not valid base64.") from None


def _answer(message: str, status: int = 200, **extra: Any) -> JSONResponse:
    body = {"message": message, **extra}
    if status != 200:
        body["detail"] = message
    return JSONResponse(body, status_code=status)


async def _failure(request: Request, error: HTTPException, prefix: str,
                   **extra: Any) -> JSONResponse:
    language = await request_language(request)
    detail = translate_message(str(error.detail), language)
    return _answer(gettext(prefix, language, error=detail), error.status_code, **extra)


def build_compat_router(context: StudioContext, *, credentials: dict[str, str]) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["EasyPhoto-compatible"],
                       dependencies=[Depends(basic_auth_dependency(credentials))],
                       route_class=LocalizedRoute)

    @router.post("/easyphoto_train_forward",
                 summary="sd-webui-EasyPhoto's training route (its fields, base64 photos)")
    async def train_forward(request: Request, datas: dict[str, Any]
                            ) -> JSONResponse:
        try:
            record = await run_in_threadpool(_train, context, datas)
        except HTTPException as error:
            return await _failure(request, error, "Train error, error info:{error}")
        language = header_language(request)
        if record.state != "done":
            return _answer(gettext("Train error, error info:{error}", language,
                                   error=translate_message(record.message, language)), 500)
        return _answer(gettext(TRAIN_DONE, language))

    @router.post("/easyphoto_infer_forward",
                 summary="sd-webui-EasyPhoto's generation route (its fields, base64 templates)")
    async def infer_forward(request: Request, datas: dict[str, Any]
                            ) -> JSONResponse:
        try:
            outputs = await run_in_threadpool(_infer, context, datas)
        except HTTPException as error:
            return await _failure(request, error, "Infer error, error info:{error}",
                                  outputs=[], face_id_outputs=[])
        return _answer(gettext(INFER_DONE, header_language(request)), outputs=outputs,
                       face_id_outputs=[])

    return router


def _train(context: StudioContext, datas: dict[str, Any]) -> Any:
    """Queue the training and wait for it (in a worker thread): the final job record."""
    with _job_errors():
        params = parse_params(TrainParams, translate_fields(datas, TRAIN_FIELDS))
        images = datas.get("instance_images") or []
        if not isinstance(images, list):
            raise CompatError("instance_images must be a list of base64 images.")
        photos = [(f"photo{i}.png", io.BytesIO(decode_base64_image(
            image, f"instance_images[{i}]"))) for i, image in enumerate(images)]
        record = start_training(context, str(datas.get("user_id", "")), photos, params)
        return context.jobs.wait(record.id)


def _infer(context: StudioContext, datas: dict[str, Any]) -> list[str]:
    """Each template painted in turn (in a worker thread): the portraits as base64 PNGs."""
    with _job_errors():
        params, user_ids, templates = _infer_inputs(datas)
        return [_paint(context, template, user_ids, params) for template in templates]


def _infer_inputs(datas: dict[str, Any]) -> tuple[Any, list[str], list[bytes]]:
    values = translate_fields(datas, INFER_FIELDS)
    extra = datas.get("additional_prompt") or ""
    if extra:
        values["prompt"] = f"{DEFAULT_POSITIVE_PROMPT}, {extra}"
    params = parse_params(GenerateParams, values)
    user_ids = datas.get("user_ids") or []
    user_ids = [user_ids] if isinstance(user_ids, str) else list(user_ids)
    # EasyPhoto's tabs: 1 = one uploaded template (init_image), else a list of templates
    if datas.get("init_image"):
        templates = [decode_base64_image(datas["init_image"], "init_image")]
    else:
        listed = (datas.get("selected_template_images") or []) + (
            datas.get("uploaded_template_images") or [])
        templates = [decode_base64_image(image, f"template {i + 1}")
                     for i, image in enumerate(listed)]
    if not templates:
        raise CompatError("No template: send init_image (a base64 image) or "
                          "selected_template_images.")
    return params, user_ids, templates


def _paint(context: StudioContext, data: bytes, user_ids: list[str], params: Any) -> str:
    record = start_generation(context, decode_image(data).rgb, user_ids, params)
    record = context.jobs.wait(record.id)  # EasyPhoto answers when done
    if record.state != "done":
        raise ValueError(record.message or f"the generation ended {record.state}")
    with open(record.result["image"], "rb") as handle:
        return base64.b64encode(handle.read()).decode("ascii")


def register_compat_routes(app: FastAPI, context: StudioContext, *,
                           credentials: dict[str, str]) -> None:
    app.include_router(build_compat_router(context, credentials=credentials))
