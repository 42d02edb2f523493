"""The API's door: the token and the body size are checked before a byte of the body is
read, so an unauthenticated or oversized request costs the server nothing.

A pure ASGI middleware, because FastAPI reads and parses a body before it runs a route's
dependencies: checked there, an 87 MB body without a token was read whole to get its 401.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.exceptions import HTTPException

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Shortest token the API starts with: anything shorter is guessable.
MIN_TOKEN_CHARS = 16


def given_token(authorization: str) -> str:
    """The credential of an ``Authorization`` header: after ``Bearer`` (any case), or the
    whole value (MinIO's webhook sends its ``auth_token`` bare)."""
    scheme, _, credential = authorization.strip().partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else authorization.strip()


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class RequestGuard:
    """Refuses, before the body is read: a request without the token (401) on any path but
    ``open_paths``; with no token configured (local development), a client that is not on
    loopback (401); a body over ``max_body`` bytes (413), by its ``Content-Length`` or, for
    a chunked body, as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, *, token: str, max_body: int,
                 open_paths: Iterable[str]) -> None:
        self.app, self.token, self.max_body = app, token.encode(), max_body
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if scope["path"] not in self.open_paths and not self._authorized(scope, headers):
            await _reply(send, 401, "missing or wrong token",
                         [(b"www-authenticate", b"Bearer")])
            return
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reply(send, 400, "malformed Content-Length")
                return
            if int(declared) > self.max_body:
                await _reply(send, 413, f"request body over {self.max_body} bytes")
                return
        await self.app(scope, self._bounded(receive), send)

    def _authorized(self, scope: Scope, headers: dict[str, str]) -> bool:
        if not self.token:
            client = scope.get("client") or (None, None)
            return is_loopback(client[0])
        given = given_token(headers.get("authorization", "")).encode()
        return hmac.compare_digest(given, self.token)

    def _bounded(self, receive: Receive) -> Receive:
        seen = 0

        async def bounded() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise HTTPException(413, f"request body over {self.max_body} bytes")
            return message

        return bounded


async def _reply(send: Send, code: int, detail: str,
                 extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": code,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
