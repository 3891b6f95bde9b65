"""What every HTTP request gets: an id, on its answer (`x-request-id`, spec §10.1) and on its
log lines (`logs.py`), and a span (`tracing.py`) continuing the caller's `traceparent`."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.logs import REQUEST_ID
from tether.protocol import ids
from tether.tracing import answered, http_span


class EachRequest:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ids.request_id()
        REQUEST_ID.set(request_id)  # the request's task is its own: nothing to reset
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        with http_span(scope["method"], scope["path"], headers) as span:

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message).append("x-request-id", request_id)
                    answered(span, message["status"])
                await send(message)

            await self.app(scope, receive, send_with_id)
