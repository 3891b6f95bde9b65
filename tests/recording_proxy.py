"""A reverse proxy that writes down what an upstream engine receives, for the upstream tests.

    python -m tests.recording_proxy --target http://127.0.0.1:PORT --port PORT --log FILE [--cut N]

Every request is forwarded as it came and appended to FILE as one JSON line: its method, path,
session and `traceparent` headers and raw body. When a streamed answer ends, a line says whether
the whole stream reached the client (`"outcome": "finished"`) or the client hung up first
(`"closed_early"`).

`--cut N` plays an engine that ends a stream early: of the first N streamed chat completions,
only the first event reaches the client, and then the stream ends as if it were complete
(`"outcome": "cut"`). `--owned-by NAME` makes the engine's model list say it is NAME's (e.g.
`vllm`, to be taken for an engine that can salt its prefix cache).

A test starts it as a `Recorder` and reads back what passed through.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tether.bench.servers import ServerProcess, free_port


def build(target: str, log: Path, cut: int = 0, owned_by: str | None = None) -> Starlette:
    # A connection per request: one the engine dropped mid-answer is never reused by mistake.
    client = httpx.AsyncClient(
        base_url=target, timeout=httpx.Timeout(600.0), limits=httpx.Limits(max_keepalive_connections=0)
    )

    cuts: list[str] = []  # the streams cut so far

    def record(entry: dict[str, object]) -> None:
        with log.open("ab") as file:
            file.write(orjson.dumps(entry) + b"\n")

    async def forward(request: Request) -> Response:
        body = await request.body()
        headers = request.headers
        record({"method": request.method, "path": request.url.path, "session": headers.get("x-session-id"),
                "traceparent": headers.get("traceparent"), "body": body.decode()})  # fmt: skip
        upstream = await client.send(
            client.build_request(request.method, request.url.path, content=body,
                                 headers={"content-type": "application/json"}),
            stream=True,
        )  # fmt: skip

        streamed = b'"stream":true' in body.replace(b" ", b"")
        cutting = streamed and len(cuts) < cut
        if cutting:
            cuts.append(request.url.path)

        async def relay() -> AsyncIterator[bytes]:
            outcome = "closed_early"
            try:
                if cutting:
                    async for line in upstream.aiter_lines():
                        if line.startswith("data:"):
                            yield (line + "\n\n").encode()
                            break
                    outcome = "cut"
                    return
                async for data in upstream.aiter_raw():
                    yield data
                outcome = "finished"
            finally:
                await upstream.aclose()
                record({"path": request.url.path, "outcome": outcome})

        media = upstream.headers.get("content-type", "application/json")
        if owned_by is not None and request.url.path.endswith("/models"):
            listing = orjson.loads(await upstream.aread())
            await upstream.aclose()
            for model in listing.get("data", []):
                model["owned_by"] = owned_by
            return Response(orjson.dumps(listing), status_code=upstream.status_code, media_type=media)
        return StreamingResponse(relay(), status_code=upstream.status_code, media_type=media)

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])])


class Recorder(ServerProcess):
    """The recording proxy in front of `target`; `requests()` reads back what passed through."""

    def __init__(self, target: ServerProcess, tmp: Path, *flags: str) -> None:
        self.log = tmp / "received.jsonl"
        port = free_port()
        command = [sys.executable, __file__, "--port", str(port),
                   "--target", f"http://127.0.0.1:{target.port}", "--log", str(self.log), *flags]  # fmt: skip
        super().__init__(command, port, "/v1/models", tmp / "proxy.log")

    def entries(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [orjson.loads(line) for line in self.log.read_bytes().splitlines()]

    def completions(self, since: int = 0) -> list[dict[str, Any]]:
        """Chat completion requests after the first `since` log entries, with bodies parsed."""
        found = [e for e in self.entries()[since:] if e.get("path") == "/v1/chat/completions" and "body" in e]
        return [{**e, "json": orjson.loads(e["body"])} for e in found]

    def outcome(self, since: int, timeout: float = 30.0) -> str:
        """How the first stream recorded after `since` ended, once it has (on a loaded machine
        that was seen to take over 10 s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.entries()[since:]:
                if "outcome" in entry and entry["path"] == "/v1/chat/completions":
                    return str(entry["outcome"])
            time.sleep(0.05)
        raise AssertionError("no stream ended")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--cut", type=int, default=0, help="Streams to end after their first event.")
    parser.add_argument("--owned-by", help="The owner the model list names.")
    args = parser.parse_args()
    app = build(args.target, args.log, args.cut, args.owned_by)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
