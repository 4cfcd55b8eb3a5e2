"""HTTP Basic authentication for our routes, checked against "user:pass,user2:pass2".

A1111 does not protect routes added in `on_app_started` (HOST.md), so we check its `--api-auth`
credentials ourselves; the standalone app takes the same flag.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

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
