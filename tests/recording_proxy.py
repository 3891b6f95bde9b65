"""A reverse proxy that writes down what an upstream engine receives, for the upstream tests.

    python -m tests.recording_proxy --target http://127.0.0.1:PORT --port PORT --log FILE

Every request is forwarded as it came and appended to FILE as one JSON line: its method, path,
session header and raw body. When a streamed answer ends, a line says whether the whole stream
reached the client (`"outcome": "finished"`) or the client hung up first (`"closed_early"`).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def build(target: str, log: Path) -> Starlette:
    # A connection per request: one the engine dropped mid-answer is never reused by mistake.
    client = httpx.AsyncClient(
        base_url=target, timeout=httpx.Timeout(600.0), limits=httpx.Limits(max_keepalive_connections=0)
    )

    def record(entry: dict[str, object]) -> None:
        with log.open("ab") as file:
            file.write(orjson.dumps(entry) + b"\n")

    async def forward(request: Request) -> Response:
        body = await request.body()
        record({"method": request.method, "path": request.url.path,
                "session": request.headers.get("x-session-id"), "body": body.decode()})  # fmt: skip
        upstream = await client.send(
            client.build_request(request.method, request.url.path, content=body,
                                 headers={"content-type": "application/json"}),
            stream=True,
        )  # fmt: skip

        async def relay() -> AsyncIterator[bytes]:
            outcome = "closed_early"
            try:
                async for data in upstream.aiter_raw():
                    yield data
                outcome = "finished"
            finally:
                await upstream.aclose()
                record({"path": request.url.path, "outcome": outcome})

        media = upstream.headers.get("content-type", "application/json")
        return StreamingResponse(relay(), status_code=upstream.status_code, media_type=media)

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    uvicorn.run(build(args.target, args.log), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
