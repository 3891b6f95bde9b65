"""Server-Sent Events framing (spec §10.3): `event: <type>`, one line of JSON, a blank line."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.responses import StreamingResponse


def encode(event: dict[str, Any]) -> bytes:
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def stream(
    events: AsyncIterator[dict[str, Any]], on_close: Callable[[], None] | None = None
) -> StreamingResponse:
    """Stream `events`; `on_close` runs however the stream ends, a client disconnect included."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield encode(event)
        finally:
            if on_close is not None:
                on_close()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
