"""HTTP routes of EasyPhoto, the same in A1111 and in the standalone app: /easyphoto/v1/..."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse

from easyphoto_app.auth import basic_auth_dependency
from easyphoto_app.localized import LocalizedRoute
from easyphoto_core.context import StudioContext
from easyphoto_core.images import DecodeLimits, decode_image
from easyphoto_core.jobs import JobNotFound, JobStateError, QueueFull, StoreUnavailable
from easyphoto_core.params import GenerateParams, TrainParams, parse_params
from easyphoto_core.studio import attach, jobs_overview, start_generation, start_training

API_PREFIX = "/easyphoto/v1"


def _params(model: type, text: str) -> Any:
    try:
        data = json.loads(text or "{}")
    except json.JSONDecodeError as error:
        raise ValueError(f"params must be a JSON object: {error}") from None
    if not isinstance(data, dict):
        raise ValueError("params must be a JSON object")
    return parse_params(model, data)


def _job(context: StudioContext, job_id: str) -> Any:
    with _job_errors():
        return context.jobs.get(job_id)


_ERROR_STATUS = ((JobNotFound, 404), (JobStateError, 409), (QueueFull, 429),
                 (StoreUnavailable, 503), (ValueError, 400), (FileNotFoundError, 400))


@contextmanager
def _job_errors() -> Iterator[None]:
    """Our errors as HTTP answers with their message (they say what is wrong and what to do):
    never a bare 500."""
    try:
        yield
    except HTTPException:
        raise
    except Exception as error:
        for error_type, status in _ERROR_STATUS:
            if isinstance(error, error_type):
                headers = {"Retry-After": "60"} if status in (429, 503) else None
                raise HTTPException(status_code=status, detail=str(error),
                                    headers=headers) from None
        if isinstance(error, OSError):  # e.g. a read-only or full workspace
            raise HTTPException(status_code=503, detail=f"The studio cannot write its files: "
                                f"{error}. Check the workspace folder.") from None
        raise


def add_job_routes(router: APIRouter, context: StudioContext) -> None:
    # plain `def` routes: copying uploads and reading files block, so FastAPI runs them in its
    # thread pool, not on the event loop (inside A1111 the WebUI's own)
    @router.post("/train", summary="Train a user id from photos (a queued job)")
    def train(user_id: str = Form(...), params: str = Form("{}"),
                    photos: list[UploadFile] = File(...)) -> dict[str, Any]:
        with _job_errors():
            # the uploads are spooled to disk by the server; the job copies them in chunks
            uploads = [(p.filename or f"photo{i}", p.file) for i, p in enumerate(photos)]
            return start_training(context, user_id, uploads,
                                  _params(TrainParams, params)).to_dict()

    @router.post("/generate", summary="Paint user ids (left to right) into a template")
    def generate(user_ids: str = Form(..., description="comma-separated, left to right"),
                       params: str = Form("{}"), template: UploadFile = File(...)
                       ) -> dict[str, Any]:
        with _job_errors():
            data = template.file.read(DecodeLimits().max_bytes + 1)
            if len(data) > DecodeLimits().max_bytes:
                raise ValueError(f"The template is larger than "
                                 f"{DecodeLimits().max_bytes >> 20} MB: use a smaller photo.")
            image = decode_image(data).rgb
            del data
            ids = [uid.strip() for uid in user_ids.split(",") if uid.strip()]
            return start_generation(context, image, ids,
                                    _params(GenerateParams, params)).to_dict()

    @router.get("/jobs", summary="Recent and running jobs, newest first")
    def jobs(limit: int = 50, active: bool = False) -> dict[str, Any]:
        with _job_errors():
            return {"jobs": jobs_overview(context, limit=limit, active=active)}

    @router.get("/jobs/{job_id}", summary="A job's state, progress and result")
    def job(job_id: str) -> dict[str, Any]:
        return _job(context, job_id).to_dict()

    @router.post("/jobs/{job_id}/cancel", summary="Cancel a queued, running or interrupted job")
    def cancel(job_id: str) -> dict[str, Any]:
        with _job_errors():
            return context.jobs.cancel(job_id, by="a request to the API").to_dict()

    @router.post("/jobs/{job_id}/resume",
                 summary="Queue an interrupted, cancelled or failed job again (a training "
                         "continues from its last checkpoint)")
    def resume(job_id: str) -> dict[str, Any]:
        with _job_errors():
            attach(context)
            return context.jobs.resume(job_id).to_dict()

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
        route_class=LocalizedRoute,  # errors' detail in the caller's language (en / zh)
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
    """Our routes on `app`; also starts the job queue's worker, so jobs queued before a restart
    run (in a host: as soon as it has started)."""
    from easyphoto_app.compat_routes import register_compat_routes  # it builds on this module

    app.include_router(build_router(context, credentials=credentials))
    register_compat_routes(app, context, credentials=credentials)  # sd-webui-EasyPhoto's routes
    attach(context)
