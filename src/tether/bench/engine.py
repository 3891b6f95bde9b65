"""A stand-in OpenAI-compatible engine for benchmarks of Tether's upstream mode: it answers
`/v1/chat/completions` streams at once, `max_tokens` one-word deltas (16 without it), with a
finish reason and usage, so that what is measured is Tether in front of an engine, not a model.
A request without `stream` (a warm-up) gets the same answer as one completion.
With `--reasoning N` each answer starts with N deltas of `reasoning_content`, as a reasoning
model's behind vLLM's reasoning parser.

    python -m tether.bench.engine --port 8001 [--reasoning N]
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

MODEL = "bench-engine"
DEFAULT_TOKENS = 16
reasoning_deltas = 0  # set by `main` from `--reasoning`


async def models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]})


async def completions(request: Request) -> StreamingResponse | JSONResponse:
    body = orjson.loads(await request.body())
    tokens = int(body.get("max_tokens") or body.get("max_completion_tokens") or DEFAULT_TOKENS)
    prompt = len(orjson.dumps(body.get("messages", []))) // 4
    if not body.get("stream"):
        return JSONResponse(_completion(tokens, prompt))
    return StreamingResponse(_chunks(tokens, prompt), media_type="text/event-stream")


def _completion(tokens: int, prompt_tokens: int) -> dict[str, Any]:
    text = "".join(f" word{n}" for n in range(tokens))
    message = {"role": "assistant", "content": text}
    if reasoning_deltas:
        message["reasoning_content"] = "".join(f" thought{n}" for n in range(reasoning_deltas))
    return {
        "id": "bench", "object": "chat.completion", "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
        "usage": _usage(prompt_tokens, reasoning_deltas + tokens),
    }  # fmt: skip


def _usage(prompt_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
            "total_tokens": prompt_tokens + output_tokens}  # fmt: skip


async def _chunks(tokens: int, prompt_tokens: int) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
        choices = [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}]
        data: dict[str, Any] = {
            "id": "bench",
            "object": "chat.completion.chunk",
            "model": MODEL,
            "choices": choices,
        }
        if usage:
            data["usage"] = usage
        return b"data: " + orjson.dumps(data) + b"\n\n"

    yield chunk({"role": "assistant", "content": ""})
    for n in range(reasoning_deltas):
        yield chunk({"reasoning_content": f" thought{n}"})
    for n in range(tokens):
        yield chunk({"content": f" word{n}"})
    yield chunk({}, "stop")
    yield chunk({}, usage=_usage(prompt_tokens, reasoning_deltas + tokens))
    yield b"data: [DONE]\n\n"


app = Starlette(
    routes=[Route("/v1/models", models), Route("/v1/chat/completions", completions, methods=["POST"])]
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reasoning", type=int, default=0, help="reasoning deltas before each answer")
    arguments = parser.parse_args()
    global reasoning_deltas  # one process, one engine: its configuration
    reasoning_deltas = arguments.reasoning
    uvicorn.run(app, host="127.0.0.1", port=arguments.port, log_level="warning")


if __name__ == "__main__":
    main()
