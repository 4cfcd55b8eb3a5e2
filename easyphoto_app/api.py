"""HTTP routes of EasyPhoto, the same in A1111 and in the standalone app: /easyphoto/v1/..."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse

from easyphoto_app.auth import basic_auth_dependency
from easyphoto_core.context import StudioContext
from easyphoto_core.jobs import JobNotFound

API_PREFIX = "/easyphoto/v1"


def _bad_request(error: Exception) -> HTTPException:
    """Our errors already say what is wrong and what to do: pass the message on."""
    return HTTPException(status_code=400, detail=str(error))


def _params(model: type, text: str) -> Any:
    from easyphoto_core.params import parse_params

    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"params must be a JSON object: {error}") from None
    if not isinstance(data, dict):
        raise ValueError("params must be a JSON object")
    return parse_params(model, data)


def _job(context: StudioContext, job_id: str) -> Any:
    try:
        return context.jobs.get(job_id)
    except JobNotFound as error:
        raise HTTPException(status_code=404, detail=str(error)) from None


def add_job_routes(router: APIRouter, context: StudioContext) -> None:
    from easyphoto_core.params import GenerateParams, TrainParams

    @router.post("/train", summary="Train a user id from photos (a queued job)")
    async def train(user_id: str = Form(...), params: str = Form("{}"),
                    photos: list[UploadFile] = File(...)) -> dict[str, Any]:
        from easyphoto_core.preprocess import InputPhoto
        from easyphoto_core.studio import start_training

        try:
            uploads = [InputPhoto(name=p.filename or f"photo{i}", data=await p.read())
                       for i, p in enumerate(photos)]
            return start_training(context, user_id, uploads,
                                  _params(TrainParams, params)).to_dict()
        except (ValueError, FileNotFoundError) as error:
            raise _bad_request(error) from None

    @router.post("/generate", summary="Paint user ids (left to right) into a template")
    async def generate(user_ids: str = Form(..., description="comma-separated, left to right"),
                       params: str = Form("{}"), template: UploadFile = File(...)
                       ) -> dict[str, Any]:
        from easyphoto_core.images import decode_image
        from easyphoto_core.studio import start_generation

        try:
            image = decode_image(await template.read()).rgb
            ids = [uid.strip() for uid in user_ids.split(",") if uid.strip()]
            return start_generation(context, image, ids,
                                    _params(GenerateParams, params)).to_dict()
        except (ValueError, FileNotFoundError) as error:
            raise _bad_request(error) from None

    @router.get("/jobs/{job_id}", summary="A job's state, progress and result")
    def job(job_id: str) -> dict[str, Any]:
        return _job(context, job_id).to_dict()

    @router.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job")
    def cancel(job_id: str) -> dict[str, Any]:
        try:
            return context.jobs.cancel(job_id).to_dict()
        except JobNotFound as error:
            raise HTTPException(status_code=404, detail=str(error)) from None

    @router.get("/jobs/{job_id}/image", summary="The portrait of a finished generate job")
    def image(job_id: str) -> FileResponse:
        record = _job(context, job_id)
        if record.state != "done" or "image" not in record.result:
            raise HTTPException(status_code=409, detail=f"job {job_id} is {record.state}")
        return FileResponse(record.result["image"], media_type="image/png")


def build_router(context: StudioContext, *, credentials: dict[str, str]) -> APIRouter:
    router = APIRouter(
        prefix=API_PREFIX,
        tags=["EasyPhoto"],
        dependencies=[Depends(basic_auth_dependency(credentials))],
    )

    @router.get("/version", summary="Version, backend and workspace")
    def version() -> dict[str, Any]:
        return context.describe()

    @router.get("/params", summary="Every parameter: label, default, bounds")
    def params() -> dict[str, Any]:
        return context.params_description()

    @router.get("/user_ids", summary="User ids in the workspace, and the trained ones")
    def user_ids() -> dict[str, list[str]]:
        return context.user_ids()

    add_job_routes(router, context)
    return router


def register_routes(app: FastAPI, context: StudioContext, *, credentials: dict[str, str]) -> None:
    app.include_router(build_router(context, credentials=credentials))
