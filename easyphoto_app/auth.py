"""HTTP Basic authentication for our routes, checked against "user:pass,user2:pass2".

A1111 does not protect routes added in `on_app_started` (HOST.md), so we check its `--api-auth`
credentials ourselves; the standalone app takes the same flag and puts BasicAuthMiddleware in
front of everything it serves.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials


def parse_credentials(api_auth: str | None) -> dict[str, str]:
    """'user:pass,user2:pass2' -> {user: pass}; passwords may contain ':'."""
    credentials: dict[str, str] = {}
    for item in (api_auth or "").split(","):
        user, sep, password = item.strip().partition(":")
        if sep and user:
            credentials[user] = password
    return credentials


def basic_auth_dependency(credentials: dict[str, str]) -> Callable[..., None]:
    """A FastAPI dependency refusing requests without valid credentials (none set = open)."""
    security = HTTPBasic(auto_error=False)

    def check(given: HTTPBasicCredentials | None = Depends(security)) -> None:
        if not credentials:
            return
        if given is not None and given.username in credentials:
            expected = credentials[given.username].encode()
            if secrets.compare_digest(given.password.encode(), expected):
                return
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="EasyPhoto API: wrong or missing credentials (see --api-auth).",
            headers={"WWW-Authenticate": "Basic"},
        )

    return check


def credentials_match(header: str | None, credentials: dict[str, str]) -> bool:
    """Whether an `Authorization: Basic ...` header names one of `credentials`."""
    import base64
    import binascii

    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(encoded.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    expected = credentials.get(user)
    return bool(sep) and expected is not None and secrets.compare_digest(
        password.encode(), expected.encode())


class BasicAuthMiddleware:
    """Every request to the app — our routes, the UI page, its gradio API and websocket, its
    files, /docs and /openapi.json — needs the credentials (the standalone app's --api-auth).

    Browsers ask once and then send them on every request, so the UI works as before."""

    def __init__(self, app: Any, credentials: dict[str, str]) -> None:
        self.app, self.credentials = app, credentials

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or not self.credentials:
            await self.app(scope, receive, send)
            return
        headers = {key.lower(): value for key, value in scope.get("headers", [])}
        header = headers.get(b"authorization", b"").decode("latin-1")
        if credentials_match(header, self.credentials):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = b'{"detail":"EasyPhoto: wrong or missing credentials (see --api-auth)."}'
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Basic realm="EasyPhoto"')]})
        await send({"type": "http.response.body", "body": body})
