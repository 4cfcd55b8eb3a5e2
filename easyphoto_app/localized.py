"""Our HTTP errors in the caller's language: `detail` in English or 简体中文.

The language is the request's `lang` (query parameter or form/JSON field), else its
Accept-Language header, else the studio's default (`app.py --lang`). Routes are built with
`route_class=LocalizedRoute`; the handler runs inside `use_language`, so a message built while
answering is in that language too, and an English error raised deep in the core is translated
through the catalogue's templates on its way out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

from easyphoto_core.i18n import (
    language_from_header,
    normalize_language,
    translate_message,
    use_language,
)


def header_language(request: Request) -> str | None:
    """`lang` from the query, else the Accept-Language header (no body read)."""
    chosen = normalize_language(request.query_params.get("lang"))
    return chosen or language_from_header(request.headers.get("accept-language"))


async def request_language(request: Request) -> str | None:
    """`lang` from the query, the form or a JSON body, else the Accept-Language header.

    Called once an answer is an error: by then the handler has parsed the body (starlette keeps
    it), and a caller that failed authentication never gets its upload parsed for a language."""
    chosen = normalize_language(request.query_params.get("lang"))
    if chosen is None:
        chosen = normalize_language(await _body_lang(request))
    return chosen or language_from_header(request.headers.get("accept-language"))


async def _body_lang(request: Request) -> str | None:
    kind = request.headers.get("content-type", "")
    try:
        if kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            value = (await request.form()).get("lang")  # starlette keeps the parsed form
            return value if isinstance(value, str) else None
        if kind.startswith("application/json"):
            data = json.loads(await request.body() or b"{}")  # the body is cached too
            value = data.get("lang") if isinstance(data, dict) else None
            return value if isinstance(value, str) else None
    except Exception:  # a malformed body is the handler's to report, in its own words
        return None
    return None


def localized_detail(detail: Any, language: str | None) -> Any:
    if isinstance(detail, str):
        return translate_message(detail, language)
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        return {**detail, "message": translate_message(detail["message"], language)}
    return detail


class LocalizedRoute(APIRoute):
    """An APIRoute whose HTTPException `detail` comes in the request's language."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def localized(request: Request) -> Response:
            try:
                with use_language(header_language(request)):
                    return await handler(request)
            except HTTPException as error:
                if error.status_code != 401:  # before a login, only the header counts
                    language = await request_language(request)
                else:
                    language = header_language(request)
                error.detail = localized_detail(error.detail, language)
                raise

        return localized
