"""One agent running the rollout in one mode, timing every turn from the client's side.

Every turn of the Responses modes after the first asks for `prompt_cache_diagnostics` against
the turn before, so the report can say why any turn missed the cache.

Modes:
- `ws`: one WebSocket; a `generate: false` warm-up, then `previous_response_id` and only the new
  items each turn, `store: false` (how Codex runs).
- `ws-reconnect`: as `ws`, but every `RECONNECT_EVERY` turns the agent opens a new socket and
  resends its whole context without naming a parent, as a client does after the connection's
  60-minute cap, a restart or a dropped socket (`store: false` leaves it nothing to name).
- `http-stateless`: `POST /v1/responses` with the full history every turn, `store: false` (how
  Codex and most agent loops run over HTTP).
- `http-chained`: `previous_response_id` and only the new items, `store: true`.
- `chat`: `POST /v1/chat/completions` with the full history (any OpenAI-compatible peer); the tool
  descriptions go into the system message, so the peer's prompt carries the same content.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from tether.bench.workload import TOOLS, Rollout

MODES = ("ws", "ws-reconnect", "http-stateless", "http-chained", "chat")
RECONNECT_EVERY = 5  # turns of `ws-reconnect` per socket
TERMINAL = {"response.completed", "response.failed", "response.incomplete"}
FIRST_TOKEN = {"response.output_text.delta", "response.function_call_arguments.delta"}


@dataclass(frozen=True)
class TurnResult:
    turn: int
    first_event_s: float  # until the server's first event (response.created / first chunk)
    first_token_s: float | None  # until the first output delta
    seconds: float  # until the terminal event
    input_tokens: int | None
    cached_tokens: int | None  # None where the server does not say (chat peers)
    bytes_sent: int
    reconnected: bool = False  # the turn's socket is new, and it resent the whole context
    # Compared with the turn before (`prompt_cache_diagnostics`): a miss's reason, "hit", or
    # None where the server does not say (chat peers, turn 1 over HTTP).
    cache: str | None = None

    @property
    def prefilled_tokens(self) -> int | None:
        if self.input_tokens is None or self.cached_tokens is None:
            return None
        return self.input_tokens - self.cached_tokens


@dataclass
class Clock:
    """Times one turn from the moment its request is sent."""

    started: float = field(default_factory=time.perf_counter)
    first_event: float | None = None
    first_token: float | None = None

    def event(self, is_token: bool) -> None:
        now = time.perf_counter() - self.started
        self.first_event = self.first_event if self.first_event is not None else now
        if is_token and self.first_token is None:
            self.first_token = now


@dataclass(frozen=True)
class Target:
    base_url: str  # .../v1
    model: str
    max_output_tokens: int
    api_key: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


async def run_agent(mode: str, target: Target, rollout: Rollout) -> list[TurnResult]:
    if mode in ("ws", "ws-reconnect"):
        return await _websocket(target, rollout, RECONNECT_EVERY if mode == "ws-reconnect" else None)
    if mode == "chat":
        return await _chat(target, rollout)
    return await _http(target, rollout, chained=mode == "http-chained")


def _create(target: Target, rollout: Rollout, **fields: Any) -> dict[str, Any]:
    return {"model": target.model, "instructions": rollout.instructions, "tools": TOOLS,
            "temperature": 0, "max_output_tokens": target.max_output_tokens, **fields}  # fmt: skip


def _compared(previous: dict[str, Any]) -> dict[str, Any]:
    return {"prompt_cache_options": {"comparison_response_id": previous["id"]}}


def _cache(response: dict[str, Any]) -> str | None:
    """What the diagnostics say: a miss's reason, "hit", or None when there are none."""
    diagnostics = response.get("prompt_cache_diagnostics") or {}
    kind = diagnostics.get("type")
    return diagnostics.get("reason") if kind == "cache_miss" else "hit" if kind == "cache_hit" else kind


def _usage(response: dict[str, Any]) -> tuple[int, int]:
    usage = response.get("usage") or {}
    return usage.get("input_tokens", 0), usage.get("input_tokens_details", {}).get("cached_tokens", 0)


async def _websocket(target: Target, rollout: Rollout, reconnect_every: int | None) -> list[TurnResult]:
    url = target.base_url.replace("http", "ws", 1) + "/responses"
    results: list[TurnResult] = []
    warm_up = [{"role": "developer", "content": "Repository: tether-bench."}]
    new_items: list[dict[str, Any]] = [{"role": "user", "content": rollout.task}]
    history = [*warm_up, *new_items]  # all of it, as the agent resends it on a new socket
    ws = await connect(url, additional_headers=target.headers, max_size=None)
    try:
        warm = _create(target, rollout, type="response.create", generate=False, store=False, input=warm_up)
        previous, _ = await _ws_turn(ws, warm)
        for turn in range(1, rollout.turns + 1):
            reconnected = reconnect_every is not None and turn > 1 and (turn - 1) % reconnect_every == 0
            compared = _compared(previous)
            if reconnected:
                await ws.close()
                ws = await connect(url, additional_headers=target.headers, max_size=None)
                body = _create(
                    target, rollout, type="response.create", store=False, input=history, **compared
                )
            else:
                body = _create(target, rollout, type="response.create", store=False,
                               previous_response_id=previous["id"], input=new_items, **compared)  # fmt: skip
            previous, result = await _ws_turn(ws, body, turn, reconnected)
            results.append(result)
            new_items = [rollout.reply(turn, previous["output"])]
            history += [*previous["output"], *new_items]
    finally:
        await ws.close()
    return results


async def _ws_turn(
    ws: ClientConnection, body: dict[str, Any], turn: int = 0, reconnected: bool = False
) -> tuple[dict[str, Any], TurnResult]:
    payload = orjson.dumps(body)
    clock = Clock()
    await ws.send(payload.decode())
    async for message in ws:
        event = orjson.loads(message)
        clock.event(event["type"] in FIRST_TOKEN)
        if event["type"] == "error":
            raise RuntimeError(f"turn {turn}: {event['error']}")
        if event["type"] in TERMINAL:
            return event["response"], _result(turn, clock, event["response"], len(payload), reconnected)
    raise RuntimeError("the socket closed mid-turn")


async def _http(target: Target, rollout: Rollout, *, chained: bool) -> list[TurnResult]:
    results = []
    history: list[dict[str, Any]] = [{"role": "user", "content": rollout.task}]
    new_items = list(history)
    previous: dict[str, Any] | None = None
    async with httpx.AsyncClient(timeout=600, headers=target.headers) as client:
        for turn in range(1, rollout.turns + 1):
            compared = _compared(previous) if previous else {}
            if chained:
                parent = previous["id"] if previous else None
                body = _create(target, rollout, store=True, stream=True, input=new_items,
                               previous_response_id=parent, **compared)  # fmt: skip
            else:
                body = _create(target, rollout, store=False, stream=True, input=history, **compared)
            payload = orjson.dumps(body)
            clock = Clock()
            async for event in _sse(client, target.base_url + "/responses", payload):
                clock.event(event.get("type") in FIRST_TOKEN)
                if event.get("type") in TERMINAL:
                    previous = event["response"]
            assert previous is not None, "the stream ended without a terminal event"
            results.append(_result(turn, clock, previous, len(payload)))
            new_items = [rollout.reply(turn, previous["output"])]
            history += [*previous["output"], *new_items]
    return results


async def _chat(target: Target, rollout: Rollout) -> list[TurnResult]:
    tools = "\n".join(json.dumps(tool) for tool in TOOLS)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": f"{rollout.instructions}\n\n# Tools\n{tools}"},
        {"role": "user", "content": rollout.task},
    ]
    results = []
    async with httpx.AsyncClient(timeout=600, headers=target.headers) as client:
        for turn in range(1, rollout.turns + 1):
            body = {"model": target.model, "messages": messages, "temperature": 0, "stream": True,
                    "max_tokens": target.max_output_tokens}  # fmt: skip
            payload = orjson.dumps(body)
            clock, text, prompt_tokens = Clock(), [], None
            async for chunk in _sse(client, target.base_url + "/chat/completions", payload):
                delta = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
                clock.event(bool(delta))
                text.append(delta or "")
                prompt_tokens = (chunk.get("usage") or {}).get("prompt_tokens", prompt_tokens)
            seconds = time.perf_counter() - clock.started
            results.append(TurnResult(turn, clock.first_event or seconds, clock.first_token, seconds,
                                      prompt_tokens, None, len(payload)))  # fmt: skip
            reply = rollout.reply(turn, [])
            messages += [
                {"role": "assistant", "content": "".join(text)},
                {"role": "user", "content": reply["content"]},
            ]
    return results


async def _sse(client: httpx.AsyncClient, url: str, payload: bytes) -> AsyncIterator[dict[str, Any]]:
    headers = {"content-type": "application/json"}
    async with client.stream("POST", url, content=payload, headers=headers) as reply:
        if reply.status_code != 200:
            raise RuntimeError(f"{url}: {reply.status_code} {(await reply.aread())[:500]!r}")
        async for line in reply.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                yield orjson.loads(line[6:])


def _result(
    turn: int, clock: Clock, response: dict[str, Any], bytes_sent: int, reconnected: bool = False
) -> TurnResult:
    seconds = time.perf_counter() - clock.started
    input_tokens, cached = _usage(response)
    return TurnResult(
        turn,
        clock.first_event or seconds,
        clock.first_token,
        seconds,
        input_tokens,
        cached,
        bytes_sent,
        reconnected,
        _cache(response),
    )
