"""The soak test: many WebSocket agents for many turns, with lanes, drops and reconnects, checking
on every event what the server promises.

Each agent keeps one connection at a time. A turn sends a create on each of 1 to `lanes` lanes
at once (the default lane and named `stream_id` lanes), half of them chained to the lane's last
response, some `store: true`, and reads until each has ended. Now and then the agent drops the
connection in the middle of a stream and opens a new one.

Checked as it runs, and once it is over:
- every create the agent did not abandon by dropping gets exactly one terminal event or one
  `error` event, and each response's `sequence_number`s run 0, 1, 2, … without a gap;
- every `store: true` response that was created is stored with a terminal status, with the
  output its terminal event carried (an abandoned one ends `incomplete` / `interrupted`);
- once the agents are done the server is idle: no running responses, no open connections, its
  asyncio tasks back to their count before the soak, and its memory near it.

With several replicas sharing a store, each connection goes to one of them at random, and a
`chaos` task may restart them as the agents run (SIGTERM, or SIGKILL): then an abandoned
`store: true` response may also end `failed` (`server_error`, ended as an orphan once its
replica's lease lapsed), and none may stay running.

What a loaded server may do to a client — refuse an upgrade (503/429), time out its handshake,
refuse a create with an `error` event, close its socket — is counted by kind (`failures`), and
the agent goes on as a polite client would: it waits (the refusal's `retry-after`, else a second)
before it connects again or starts its next turn. The creates such a close cut short are
abandoned, like those of a drop.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tether.store.base import RUNNING

TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete"})
DELTA = "response.output_text.delta"
RETRY_S = 1.0  # before connecting again after a failure that named no retry-after
OPEN_TIMEOUT_S = 10.0  # for the WebSocket handshake, as the SDKs allow


@dataclass(frozen=True)
class SoakPlan:
    connections: int = 20
    turns: int = 50
    lanes: int = 3
    drop_share: float = 0.05  # of turns that end with the agent dropping its connection mid-stream
    store_share: float = 0.3
    model: str = "tether-scripted"
    seed: int = 1


@dataclass
class Sample:
    seconds: float
    rss_bytes: float
    tasks: float
    responses_done: int


@dataclass
class SoakResult:
    creates: int = 0
    terminals: int = 0
    errors: int = 0
    drops: int = 0
    stored_checked: int = 0
    orphans: int = 0  # stored responses a killed replica left running, ended `failed` by another
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # what the client met, by kind
    samples: list[Sample] = field(default_factory=list)
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)

    def failed(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {"creates": self.creates, "terminals": self.terminals, "errors": self.errors,
                "drops": self.drops, "stored_checked": self.stored_checked, "orphans": self.orphans,
                "seconds": self.seconds,
                "violations": self.violations, "failures": self.failures,
                "before": self.before, "after": self.after,
                "samples": [vars(s) for s in self.samples]}  # fmt: skip


@dataclass
class Pending:
    """A create sent on a lane, until its terminal or error event."""

    lane: str | None
    store: bool
    response_id: str | None = None
    next_sequence: int = 0
    parent: str | None = None  # its `previous_response_id`


class Agent:
    def __init__(
        self, urls: list[str], plan: SoakPlan, number: int, result: SoakResult, stored: dict[str, Any]
    ):
        self.urls = urls  # the replicas: each connection goes to one of them, as a load balancer's
        self.plan = plan
        self.rng = random.Random(f"{plan.seed}-{number}")
        self.result = result
        self.stored = stored  # store:true response id → its terminal response, or None if abandoned
        self.last: dict[str | None, str] = {}  # lane → its latest response on this connection
        self.pending: dict[str | None, Pending] = {}  # the creates of the turn in progress
        self.retry_after_s = 0.0  # asked for by a create refused in this turn

    async def run(self, on_turn: Callable[[], None]) -> None:
        turn = 0
        while turn < self.plan.turns:
            try:
                url = self.rng.choice(self.urls)
                async with connect(url, max_size=None, open_timeout=OPEN_TIMEOUT_S) as ws:
                    self.last.clear()  # a new connection: store:false chains are gone (§8.2)
                    while turn < self.plan.turns:
                        turn += 1
                        on_turn()
                        if not await self._turn(ws):
                            self.result.drops += 1
                            break  # dropped mid-stream: reconnect
                        if self.retry_after_s:
                            await asyncio.sleep(self.retry_after_s)
                            self.retry_after_s = 0.0
            except InvalidStatus as refused:
                self.result.failed(f"upgrade refused {refused.response.status_code}")
                await asyncio.sleep(_retry_after(refused.response.headers))
            except (InvalidHandshake, TimeoutError, OSError) as exc:
                self.result.failed(f"connect: {type(exc).__name__}")
                await asyncio.sleep(RETRY_S)
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else "no close frame"
                self.result.failed(f"closed by the server ({code})")
                self._abandon()

    def _abandon(self) -> None:
        """The creates still pending will never be seen ended by this client."""
        self.result.creates -= len(self.pending)
        self.pending = {}

    async def _turn(self, ws: ClientConnection) -> bool:
        """One turn on 1..lanes lanes at once; False when the agent dropped the connection."""
        lanes: list[str | None] = [None, *(f"lane-{n}" for n in range(1, self.plan.lanes))]
        chosen = self.rng.sample(lanes, self.rng.randint(1, len(lanes)))
        drop = self.rng.random() < self.plan.drop_share
        pending = self.pending = {}
        for lane in chosen:
            create = Pending(lane, store=self.rng.random() < self.plan.store_share)
            await ws.send(orjson.dumps(self._create(create)).decode())
            pending[lane] = create  # sent: from here on it must end, or be abandoned
            self.result.creates += 1
        while pending:
            event = orjson.loads(await ws.recv())
            lane = event.get("stream_id")
            waiting = pending.get(lane)
            if waiting is None:
                self._violation(f"an event for lane {lane!r}, which has nothing pending: {event['type']}")
                continue
            if self._ended(waiting, event):
                del pending[lane]
            elif drop and event["type"] == DELTA:
                self._abandon()  # their outcome is not the client's to see
                await ws.close()
                return False
        return True

    def _create(self, pending: Pending) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "response.create", "model": self.plan.model,
                                "store": pending.store, "input": f"turn text {self.rng.random()}",
                                "max_output_tokens": 16}  # fmt: skip
        if pending.lane is not None:
            body["stream_id"] = pending.lane
        previous = self.last.get(pending.lane)
        if previous is not None and self.rng.random() < 0.5:
            body["previous_response_id"] = pending.parent = previous
        return body

    def _ended(self, pending: Pending, event: dict[str, Any]) -> bool:
        if event["type"] == "error":
            if pending.response_id is not None:
                self._violation(f"an error event after response.created: {event}")
            self._continuation_failed(pending)
            self.result.errors += 1
            self.result.failed(f"create refused {event.get('status')}")
            retry_after = event["error"].get("headers", {}).get("retry-after")
            if retry_after is not None:
                self.retry_after_s = max(self.retry_after_s, float(retry_after))
            return True
        if event.get("sequence_number") != pending.next_sequence:
            self._violation(f"sequence {event.get('sequence_number')} where {pending.next_sequence} was due")
        pending.next_sequence = event.get("sequence_number", pending.next_sequence) + 1
        response: dict[str, Any] = event.get("response") or {}
        if event["type"] == "response.created":
            pending.response_id = response["id"]
            if pending.store:
                self.stored[pending.response_id] = None
        if event["type"] not in TERMINAL:
            return False
        self.result.terminals += 1
        if response["status"] in ("completed", "incomplete"):
            self.last[pending.lane] = response["id"]
        elif response["status"] == "failed":
            self._continuation_failed(pending)
        if pending.store:
            self.stored[response["id"]] = response
        return True

    def _continuation_failed(self, pending: Pending) -> None:
        """§8.2 rule 4, as the server applies it: a lane's continuation that fails evicts its
        parent, which the agent then no longer chains from."""
        if pending.parent is not None and self.last.get(pending.lane) == pending.parent:
            del self.last[pending.lane]

    def _violation(self, what: str) -> None:
        self.result.violations.append(what)


async def run(
    base_urls: list[str],
    plan: SoakPlan,
    on_turn: Callable[[], None] = lambda: None,
    sample_every_s: float = 0.5,
    chaos: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> SoakResult:
    """The agents against one server, or against replicas sharing a store (each connection to one
    of them); `chaos` runs beside them (restarting replicas) until they are done."""
    result = SoakResult()
    stored: dict[str, Any] = {}
    ws_urls = [url.replace("http", "ws", 1) + "/responses" for url in base_urls]
    async with Probe(base_urls) as probe:
        result.before = await probe.figures()
        started = time.monotonic()
        agents = [Agent(ws_urls, plan, n, result, stored) for n in range(plan.connections)]
        helpers = [asyncio.create_task(_sample(probe, result, started, sample_every_s))]
        if chaos is not None:
            helpers.append(asyncio.create_task(chaos()))
        try:
            await asyncio.gather(*(agent.run(on_turn) for agent in agents))
        finally:
            for helper in helpers:
                helper.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        result.seconds = time.monotonic() - started
        result.after = await probe.settled()
        await _check_stored(probe, stored, result)
    _check_totals(result)
    return result


def _error_code(response: dict[str, Any]) -> str | None:
    error = response.get("error")
    return None if error is None else str(error.get("code"))


def _retry_after(headers: Mapping[str, str]) -> float:
    value = headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return RETRY_S


def _check_totals(result: SoakResult) -> None:
    if result.terminals + result.errors != result.creates:
        result.violations.append(
            f"{result.creates} creates got {result.terminals} terminal and {result.errors} error events"
        )
    for name in ("running", "connections"):
        if result.after[name] != 0:
            result.violations.append(f"{result.after[name]:g} {name} left once the agents were done")
    if result.after["tasks"] > result.before["tasks"]:
        before, after = result.before["tasks"], result.after["tasks"]
        result.violations.append(f"asyncio tasks: {before:g} before the soak, {after:g} after it")


async def _check_stored(probe: Probe, stored: dict[str, Any], result: SoakResult) -> None:
    for response_id, seen in stored.items():
        found = await probe.ended(response_id)
        if found is None:
            result.violations.append(f"stored response {response_id} is missing")
            continue
        result.stored_checked += 1
        if found["status"] in RUNNING:
            result.violations.append(f"{response_id} is still {found['status']}: stuck")
        elif seen is None:  # abandoned mid-stream: interrupted, unless it ended as the agent left
            interrupted = found["incomplete_details"] == {"reason": "interrupted"}
            # A replica killed under it: ended `failed` as an orphan by another.
            orphaned = found["status"] == "failed" and found["error"]["code"] == "server_error"
            result.orphans += orphaned
            if found["status"] != "completed" and not interrupted and not orphaned:
                result.violations.append(f"abandoned {response_id} is stored as {found['status']}")
        elif (found["status"], found["output"]) != (seen["status"], seen["output"]):
            stored_end, said_end = (f"{r['status']} ({_error_code(r)})" for r in (found, seen))
            said = f"{stored_end} where it said {said_end}"
            result.violations.append(
                f"stored {response_id} differs from what its terminal event said: {said}"
            )


async def _sample(probe: Probe, result: SoakResult, started: float, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            figures = await probe.figures()
        except httpx.HTTPError:  # a replica restarting
            continue
        done = result.terminals + result.errors
        result.samples.append(Sample(time.monotonic() - started, figures["rss"], figures["tasks"], done))


class Probe:
    """The servers' side of the story, over HTTP: their metrics (summed over the replicas) and
    their stored responses (asked of the first)."""

    METRICS = {
        "rss": "process_resident_memory_bytes",
        "tasks": "tether_asyncio_tasks",
        "running": "tether_running_responses",
        "connections": "tether_websocket_connections",
    }

    def __init__(self, base_urls: list[str]) -> None:
        self.http = httpx.AsyncClient(timeout=60)
        self.base_url = base_urls[0]
        self.metrics_urls = [url.rsplit("/v1", 1)[0] + "/metrics" for url in base_urls]

    async def __aenter__(self) -> Probe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def figures(self) -> dict[str, float]:
        figures = dict.fromkeys(self.METRICS, 0.0)
        for url in self.metrics_urls:
            text = (await self.http.get(url)).text
            for name, metric in self.METRICS.items():
                found = re.search(rf"^{metric} (\S+)$", text, re.MULTILINE)
                figures[name] += float(found.group(1)) if found else float("nan")
        return figures

    async def settled(self, timeout_s: float = 30.0) -> dict[str, float]:
        """The figures once dropped connections and their responses have wound down."""
        deadline = time.monotonic() + timeout_s
        while True:
            figures = await self.figures()
            if (figures["running"] == 0 and figures["connections"] == 0) or time.monotonic() > deadline:
                return figures
            await asyncio.sleep(0.1)

    async def ended(self, response_id: str, timeout_s: float = 30.0) -> dict[str, Any] | None:
        """The stored response once it has ended, or as it is after `timeout_s` (a running one
        whose replica was killed ends once its lease lapses). A 503 is the server still shedding
        load (it admits every `/v1` request by its loop lag), not an answer: asked again."""
        deadline = time.monotonic() + timeout_s
        while True:
            reply = await self.http.get(f"{self.base_url}/responses/{response_id}")
            if reply.status_code == 503 and time.monotonic() < deadline:
                await asyncio.sleep(_retry_after(reply.headers))
                continue
            found: dict[str, Any] | None = reply.json() if reply.status_code == 200 else None
            if found is None or found["status"] not in RUNNING or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)
