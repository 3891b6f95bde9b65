"""Bearer-key authentication and request ids, as ASGI middleware around every route."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.protocol import errors, ids
from tether.store.base import DEFAULT_TENANT

OPEN_PATHS = frozenset({"/healthz"})


class BearerAuth:
    """Finds the tenant of every request from its bearer key (spec §3.3, §7.3).

    A request without a configured key gets 401 `invalid_api_key`; a WebSocket upgrade is refused
    before it is accepted, with the same HTTP answer. With no keys configured every request belongs
    to the default tenant. The tenant goes to the routes as `request.state.tenant`.
    """

    def __init__(self, app: ASGIApp, keys: Mapping[str, str]) -> None:
        self.app = app
        self.keys = [(key.encode(), tenant) for key, tenant in keys.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        tenant = self._tenant(Headers(scope=scope)) if self.keys else DEFAULT_TENANT
        if tenant is not None or scope["path"] in OPEN_PATHS:
            scope.setdefault("state", {})["tenant"] = tenant
            await self.app(scope, receive, send)
            return
        error = errors.invalid_api_key()
        body = orjson.dumps(error.http_body())
        prefix = "websocket.http." if scope["type"] == "websocket" else "http."
        headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
        await send({"type": prefix + "response.start", "status": error.status, "headers": headers})
        await send({"type": prefix + "response.body", "body": body})

    def _tenant(self, headers: Headers) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        given = token.strip().encode()
        # Every key is compared, in constant time, so timing reveals neither a key nor which matched.
        found = None
        for key, tenant in self.keys:
            if hmac.compare_digest(given, key):
                found = tenant
        return found


def tenant_of(connection: HTTPConnection) -> str:
    tenant: str = connection.state.tenant
    return tenant


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
