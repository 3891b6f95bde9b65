"""A Codex-sized warm-up on one WebSocket, timed from the client's side.

Codex opens a socket, sends a `generate: false` warm-up with its whole prefix (instructions,
tools: ~5,700 tokens) and waits for its answer only as long as its connect timeout (5-15 s)
before it gives up and sends everything again. This measures how soon the warm-up is answered,
how soon the turn that continues it gets its first token, and how much of that turn was cached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from tether.bench.agents import FIRST_TOKEN, TERMINAL, Target

TOKENS_PER_RULE = 17  # one line of the made-up prefix, in SmolLM2 tokens (measured: 7,995 for 470 lines)


@dataclass(frozen=True)
class WarmUpRun:
    answered_s: float  # warm-up sent → its `response.completed`
    next_first_token_s: float | None  # continuation sent → its first output delta
    total_s: float  # warm-up sent → the continuation's terminal event
    warm_up_input_tokens: int
    next_cached_tokens: int


def prefix(tokens: int, session: int) -> list[dict[str, Any]]:
    """A developer message of about `tokens` tokens; `session` makes each run's prefix its own, so
    no run finds another's in the engine."""
    rules = (
        f"Rule {n}: keep functions short and name them for what they do."
        for n in range(tokens // TOKENS_PER_RULE)
    )
    return [{"role": "developer", "content": f"Session {session}. " + " ".join(rules)}]


async def run(target: Target, prefix_tokens: int, session: int) -> WarmUpRun:
    url = target.base_url.replace("http", "ws", 1) + "/responses"
    async with connect(url, additional_headers=target.headers, max_size=None) as ws:
        started = time.perf_counter()
        warm, _ = await _turn(ws, {"type": "response.create", "model": target.model, "generate": False,
                                   "store": False, "input": prefix(prefix_tokens, session)})  # fmt: skip
        answered = time.perf_counter() - started
        follow, first_token = await _turn(ws, {
            "type": "response.create", "model": target.model, "store": False, "temperature": 0,
            "previous_response_id": warm["id"], "input": "Say hi.",
            "max_output_tokens": target.max_output_tokens,
        })  # fmt: skip
    return WarmUpRun(
        answered_s=answered,
        next_first_token_s=first_token,
        total_s=time.perf_counter() - started,
        warm_up_input_tokens=warm["usage"]["input_tokens"],
        next_cached_tokens=follow["usage"]["input_tokens_details"]["cached_tokens"],
    )


async def _turn(ws: ClientConnection, body: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
    """Send `body`; its final Response and the seconds to its first output delta."""
    sent, first_token = time.perf_counter(), None
    await ws.send(orjson.dumps(body).decode())
    async for message in ws:
        event = orjson.loads(message)
        if event["type"] in FIRST_TOKEN and first_token is None:
            first_token = time.perf_counter() - sent
        if event["type"] == "error":
            raise RuntimeError(f"warm-up run: {event['error']}")
        if event["type"] in TERMINAL:
            return event["response"], first_token
    raise RuntimeError("the socket closed mid-turn")
