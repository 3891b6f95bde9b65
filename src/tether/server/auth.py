"""Bearer-key authentication and request ids, as ASGI middleware around every route."""

from __future__ import annotations

import hmac

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.protocol import errors, ids

OPEN_PATHS = frozenset({"/healthz"})


class BearerAuth:
    """Rejects requests without a configured key with 401 `invalid_api_key` (spec §3.3, §7.3).

    A WebSocket upgrade is refused before it is accepted, with the same HTTP answer.
    """

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app = app
        self.keys = tuple(key.encode() for key in keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.keys:
            await self.app(scope, receive, send)
            return
        if scope["path"] in OPEN_PATHS or self._authorized(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        error = errors.invalid_api_key()
        body = orjson.dumps(error.http_body())
        prefix = "websocket.http." if scope["type"] == "websocket" else "http."
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
        await send({"type": prefix + "response.start", "status": error.status, "headers": headers})
        await send({"type": prefix + "response.body", "body": body})

    def _authorized(self, headers: Headers) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        given = token.strip().encode()
        # Compare against every key so timing does not reveal which one matched.
        return any([hmac.compare_digest(given, key) for key in self.keys])


class RequestIds:
    """Puts an `x-request-id` on every HTTP answer (spec §10.1)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = ids.request_id()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        await self.app(scope, receive, send_with_id)
