"""Steering the responses of one WebSocket connection (spec §4.3, §7.6, §8.6).

A steer names a response of this connection, its *target*, and adds user input to it:

- while the target runs, the steer is queued, its turn says `response.steer.accepted` between
  its own events, and its backend is told to wrap up (`Cancellation.wrap_up`): the target ends
  `incomplete` / `steered` at its next safe boundary (or `completed`, if it got there first);
- once the target has ended so, its *successor* starts on its lane: the queued steers as input,
  in order, the target's settings, and the target as `previous_response_id`. The lane turn the
  target ran in starts it right after it (`after`); a steer that comes once that turn has moved
  on gets a turn of its own, which the session puts at the head of the lane (`Due`);
- a target that ended waiting for the output of client tool calls keeps its steers: each is told
  `response.steer.pending` with stubs of what it waits for, and the client's create that brings
  that output gets the steers in front of its input (`claim`);
- a target that failed, was cancelled or interrupted, or has already been continued, takes no
  more steers; nor does one that asked for automatic compaction (as on OpenAI).

Every reply about a target takes the target's next sequence number (§5.2): while it runs, its
turn says it; after its terminal event, it goes straight to the connection's sender. Queued
steers live only here and are lost with the connection (§8.6 step 6).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tether.backends.base import Cancellation
from tether.core.event_log import Event, EventSink
from tether.core.lifecycle import Lifecycle, State
from tether.core.running import Running
from tether.protocol import ids, steering
from tether.protocol.client_events import LaneKey
from tether.protocol.events import ResponseEvents
from tether.protocol.request import CreateRequest
from tether.protocol.steering import SteerRejected, SteerRequest


@dataclass(frozen=True)
class Due:
    """A successor to start on `lane`, from the steers queued for `target`, in a turn of its own."""

    lane: LaneKey
    target: str


@dataclass(frozen=True)
class SteerLimits:
    per_response: int  # steers queued for one response
    bytes: int  # the frames of the steers queued on the connection, all responses together


@dataclass(frozen=True)
class Queued:
    id: str
    request: SteerRequest
    body: Mapping[str, Any]  # as sent: a failure returns its input
    size: int  # of its frame, in bytes


@dataclass(eq=False)
class Target:
    """A response of this connection that a steer may name: what a steer needs of it."""

    id: str
    request: CreateRequest
    lane: LaneKey
    events: ResponseEvents
    lifecycle: Lifecycle
    cancel: Cancellation
    asides: deque[Callable[[], Event]]  # its turn says these (`turn.Turn.asides`)
    steers: list[Queued] = field(default_factory=list)
    told_pending: set[str] = field(default_factory=set)  # steers told `pending` (once each)
    continued: bool = False  # a response continues it: new steers are refused
    handed_over: bool = False  # its lane turn has moved on: a successor needs a turn of its own
    due: bool = False  # the session holds that turn

    @property
    def active(self) -> bool:
        """Running, or ended `completed` / `incomplete` on its own (not failed, cancelled or
        interrupted: those set the cancellation)."""
        outcome = self.lifecycle.outcome
        return outcome is None or (outcome.chainable and not self.cancel.is_set)

    @property
    def waits_for_input(self) -> bool:
        outcome = self.lifecycle.outcome
        return (
            outcome is not None
            and outcome.status is State.COMPLETED
            and steering.waits_for_input(outcome.output)
        )


@dataclass(frozen=True)
class Successor:
    """The request that commits `steers`, once its `response.created` is out."""

    target: Target
    steers: tuple[Queued, ...]
    request: CreateRequest


class Steering:
    def __init__(
        self, sender: EventSink, limits: SteerLimits, recent: int, count: Callable[[str], None]
    ) -> None:
        """`sender`: where replies about an ended target go; `recent`: ended targets kept
        steerable (those about to get a successor besides); `count`: told what became of each
        steer (`accepted`, `pending`, `committed`, or a failure's code)."""
        self.sender = sender
        self.limits = limits
        self.recent = recent
        self.count = count
        self.targets: OrderedDict[str, Target] = OrderedDict()
        self.queued_bytes = 0

    def started(self, running: Running) -> None:
        """`running` has just said `response.created` on this connection: it may be steered, and
        the response it continues has been continued."""
        assert running.socket is not None, "only a WebSocket turn can be steered"
        parent = self.targets.get(running.request.previous_response_id or "")
        if parent is not None:
            parent.continued = True
        self.targets[running.id] = Target(
            running.id, running.request, running.socket.lane, running.events, running.lifecycle,
            running.cancel, running.asides,
        )  # fmt: skip
        self._forget_old()

    async def steer(self, request: SteerRequest, body: Mapping[str, Any], size: int) -> Due | None:
        """Queue the steer (a frame of `size` bytes) for its target and reply; a successor that
        needs a turn of its own is answered `Due`. Raises `SteerRejected` when there is no such
        target here (that reply belongs to no response)."""
        target = self.targets.get(request.previous_response_id)
        if target is None:
            self.count("response_not_found")
            raise steering.not_found(request.previous_response_id)
        if target.events.ended:  # its terminal event may not be out yet: replies come after it
            await target.lifecycle.settled()
        refusal = self._refusal(target, size)
        if refusal is not None:
            await self._fail(target, body, refusal)
            return None
        queued = Queued(ids.steer_id(), request, body, size)
        target.steers.append(queued)
        self.queued_bytes += size
        self.count("accepted")
        await self._reply(target, steering.accepted(queued.id, target.id))
        if not target.lifecycle.ended:
            target.cancel.wrap_up()
        elif target.waits_for_input:
            await self._tell_pending(target)
        elif target.handed_over and not target.due:
            target.due = True
            return Due(target.lane, target.id)
        return None

    def claim(self, request: CreateRequest) -> CreateRequest:
        """A client's create: when it continues a target that waits for tool output with steers
        queued, those steers go in front of its input (§8.6 step 5)."""
        target = self.targets.get(request.previous_response_id or "")
        if target is None or not target.steers or not target.waits_for_input:
            return request
        steers = self._take(target)
        for _ in steers:
            self.count("committed")
        return steering.steers_first(request, [queued.request for queued in steers])

    async def after(self, response_id: str) -> Successor | None:
        """The target's lane turn, once it has settled: say what its turn left unsaid, and what
        becomes of its steers; the successor to start now on the lane, if any."""
        target = self.targets.get(response_id)
        if target is None:
            return None
        await self._say_asides(target)
        target.handed_over = True
        return await self._successor(target)

    async def due(self, response_id: str) -> Successor | None:
        """The turn the session started for a `Due` successor."""
        target = self.targets.get(response_id)
        if target is None:
            return None
        target.due = False
        return await self._successor(target)

    def committed(self, successor: Successor) -> None:
        for _ in successor.steers:
            self.count("committed")

    async def failed(self, successor: Successor, message: str) -> None:
        """The successor could not start: its steers fail, after the target's events."""
        for queued in successor.steers:
            await self._fail(successor.target, queued.body, steering.successor_failed(message), queued.id)

    # --- inside -----------------------------------------------------------------------------------

    def _refusal(self, target: Target, size: int) -> SteerRejected | None:
        if target.request.automatic_compaction:
            return steering.not_supported(target.id)
        if not target.active:
            return steering.not_active(target.id)
        if target.continued:
            return steering.already_completed(target.id)
        if len(target.steers) >= self.limits.per_response:
            return steering.too_many(target.id, self.limits.per_response)
        # Like queued creates: bounded in bytes too, and one alone always waits.
        if self.queued_bytes and self.queued_bytes + size > self.limits.bytes:
            return steering.too_many_bytes(self.queued_bytes, size, self.limits.bytes)
        return None

    def _take(self, target: Target) -> tuple[Queued, ...]:
        """Every steer queued for `target`, out of the queue."""
        steers, target.steers = tuple(target.steers), []
        self.queued_bytes -= sum(queued.size for queued in steers)
        return steers

    async def _successor(self, target: Target) -> Successor | None:
        if not target.steers:
            return None
        if not target.active:  # it failed or was cancelled after the steers were accepted
            for queued in self._take(target):
                await self._fail(target, queued.body, steering.not_active(target.id), queued.id)
            return None
        if target.waits_for_input:
            await self._tell_pending(target)
            return None
        steers = self._take(target)
        target.continued = True
        request = steering.successor(target.request, target.id, [queued.request for queued in steers])
        return Successor(target, steers, request)

    async def _tell_pending(self, target: Target) -> None:
        outcome = target.lifecycle.outcome
        assert outcome is not None
        for queued in [q for q in target.steers if q.id not in target.told_pending]:
            target.told_pending.add(queued.id)
            self.count("pending")
            await self._reply(target, steering.pending(queued.id, target.id, outcome.output))

    async def _fail(
        self, target: Target, body: Mapping[str, Any], rejected: SteerRejected, steer_id: str | None = None
    ) -> None:
        self.count(rejected.code)
        await self._reply(target, steering.failed(body, rejected, steer_id))

    async def _reply(self, target: Target, event: Event) -> None:
        """Said by the target's turn while it runs, else now, after what that turn left unsaid."""
        if not target.events.ended:
            target.asides.append(lambda: target.events.aside(event))
            return
        await self._say_asides(target)
        await self.sender.emit(target.events.aside(event))

    async def _say_asides(self, target: Target) -> None:
        while target.asides:
            await self.sender.emit(target.asides.popleft()())

    def _forget_old(self) -> None:
        """Keep the targets still running or about to get a successor, and the `recent` latest
        others. One forgotten with steers pending (it waited for tool output that never came)
        drops them: what a connection holds stays bounded."""
        # Handed over and not due: its steers, if any, wait for tool output (none other can be
        # left once its lane turn has looked at them).
        settled = [target for target in self.targets.values() if target.handed_over and not target.due]
        for target in settled[: max(0, len(settled) - self.recent)]:
            self._take(target)
            del self.targets[target.id]
