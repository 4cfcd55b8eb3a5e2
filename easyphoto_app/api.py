"""HTTP routes of EasyPhoto, the same in A1111 and in the standalone app: /easyphoto/v1/..."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI

from easyphoto_app.auth import basic_auth_dependency
from easyphoto_core.context import StudioContext

API_PREFIX = "/easyphoto/v1"


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

    return router


def register_routes(app: FastAPI, context: StudioContext, *, credentials: dict[str, str]) -> None:
    app.include_router(build_router(context, credentials=credentials))
