"""Answer a request with an `ApiError` before any route sees it (ASGI middleware use this).

A WebSocket upgrade gets the same HTTP answer as a plain request, through the ASGI
`websocket.http.response` extension, so clients see a status and a JSON error, not a bare close.
"""

from __future__ import annotations

import orjson
from starlette.types import Scope, Send

from tether.protocol.errors import ApiError


async def reject(scope: Scope, send: Send, error: ApiError, *extra_headers: tuple[bytes, bytes]) -> None:
    prefix = "websocket.http." if scope["type"] == "websocket" else "http."
    headers = [(b"content-type", b"application/json"), *extra_headers]
    headers += [(name.encode(), value.encode()) for name, value in error.http_headers().items()]
    await send({"type": prefix + "response.start", "status": error.status, "headers": headers})
    await send({"type": prefix + "response.body", "body": orjson.dumps(error.http_body())})
