"""Streams of Server-Sent Events (spec §10.3), framed by `protocol.events.sse_frame`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse

from tether.protocol.events import sse_frame


def stream(
    events: AsyncIterator[dict[str, Any]], on_close: Callable[[], None] | None = None
) -> StreamingResponse:
    """Stream `events`; `on_close` runs however the stream ends, a client disconnect included."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for event in events:
                yield sse_frame(event)
        finally:
            if on_close is not None:
                on_close()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )
