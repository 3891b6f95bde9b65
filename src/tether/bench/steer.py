"""Steering timed from the client's side: from a correction to the first token of its answer.

A user who sees an answer go wrong types a correction. Steered (`response.steer`), the answer
stops at its next token and its successor answers the correction at once, continuing from the
answer's state. Without steering, the client waits for the answer to end, then sends the
correction as the next turn. Each run does both, each on a socket and a conversation of its own,
interrupting the same kind of answer after the same number of tokens, and times both from the
moment the correction exists.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

from tether.bench.agents import FIRST_TOKEN, TERMINAL, Target

QUESTION = "Count from 1 to 500, one number per line."
CORRECTION = "Stop counting. Say only the word done."


@dataclass(frozen=True)
class SteerRun:
    accepted_s: float  # steer sent → `response.steer.accepted`
    stopped_s: float  # steer sent → the steered response's terminal event
    steered_first_token_s: float  # steer sent → the successor's first output delta
    steered_output_tokens: int  # what the steered response had produced
    successor_input_tokens: int
    successor_cached_tokens: int
    waited_first_token_s: float  # without steering: correction ready → the next turn's first delta
    waited_output_tokens: int  # the answer, left to end


async def run(target: Target, after_tokens: int, session: int) -> SteerRun:
    url = target.base_url.replace("http", "ws", 1) + "/responses"
    async with connect(url, additional_headers=target.headers, max_size=None) as ws:
        steered = await _steered(ws, target, after_tokens, session)
    async with connect(url, additional_headers=target.headers, max_size=None) as ws:
        waited_s, waited_tokens = await _waited(ws, target, after_tokens, session)
    return SteerRun(**steered, waited_first_token_s=waited_s, waited_output_tokens=waited_tokens)


def _question(target: Target, session: int, strategy: str) -> dict[str, Any]:
    """The answer to interrupt, in a conversation of its own (`session` and `strategy` keep the
    engine from finding another run's prefix)."""
    return {"type": "response.create", "model": target.model, "store": False, "temperature": 0,
            "max_output_tokens": target.max_output_tokens,
            "input": f"Session {session}, {strategy}. {QUESTION}"}  # fmt: skip


async def _steered(ws: ClientConnection, target: Target, after_tokens: int, session: int) -> dict[str, Any]:
    await _send(ws, _question(target, session, "steered"))
    times: dict[str, float] = {}
    deltas, sent, answers = 0, 0.0, list[str]()
    async for message in ws:
        event = orjson.loads(message)
        kind = event["type"]
        if kind in FIRST_TOKEN:
            deltas += 1
            if deltas == after_tokens and not sent:
                sent = time.perf_counter()
                await _send(
                    ws, {"type": "response.steer", "previous_response_id": answers[0], "input": CORRECTION}
                )
            elif answers[1:] and "first_token" not in times:
                times["first_token"] = time.perf_counter() - sent
        elif kind == "response.created":
            answers.append(event["response"]["id"])
        elif kind == "response.steer.accepted":
            times["accepted"] = time.perf_counter() - sent
        elif kind in ("error", "response.steer.failed"):
            raise RuntimeError(f"steer run: {event['error']}")
        elif kind in TERMINAL and not sent:
            raise RuntimeError(f"the answer ended before {after_tokens} tokens: steer it sooner")
        elif kind in TERMINAL and not answers[1:]:
            times["stopped"] = time.perf_counter() - sent
            stopped = event["response"]
        elif kind in TERMINAL:
            usage = event["response"]["usage"]
            return {
                "accepted_s": times["accepted"],
                "stopped_s": times["stopped"],
                "steered_first_token_s": times["first_token"],
                "steered_output_tokens": stopped["usage"]["output_tokens"],
                "successor_input_tokens": usage["input_tokens"],
                "successor_cached_tokens": usage["input_tokens_details"]["cached_tokens"],
            }
    raise RuntimeError("the socket closed mid-run")


async def _waited(ws: ClientConnection, target: Target, after_tokens: int, session: int) -> tuple[float, int]:
    """The correction sent as the next turn once the answer has ended: seconds from when it
    existed (the answer's `after_tokens`-th delta) to its answer's first delta, and how long the
    answer ran."""
    await _send(ws, _question(target, session, "waited"))
    deltas, ready, answer = 0, 0.0, None
    async for message in ws:
        event = orjson.loads(message)
        if event["type"] in FIRST_TOKEN:
            deltas += 1
            if deltas == after_tokens:
                ready = time.perf_counter()
            elif answer is not None:
                return time.perf_counter() - ready, answer["usage"]["output_tokens"]
        elif event["type"] == "error":
            raise RuntimeError(f"steer run: {event['error']}")
        elif event["type"] in TERMINAL and answer is None:
            answer = event["response"]
            ready = ready or time.perf_counter()  # it ended before the correction came
            correction = {**_question(target, session, "waited"), "input": CORRECTION}
            await _send(ws, {**correction, "previous_response_id": answer["id"]})
    raise RuntimeError("the socket closed mid-run")


async def _send(ws: ClientConnection, event: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(event).decode())
