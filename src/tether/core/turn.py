"""Run one response: drive the backend, turn its model events into stream events, end it once.

A turn always reaches exactly one terminal state (§5.1):
- the backend finished: `completed`, or `incomplete` / `max_output_tokens` when it was cut short;
- the cancellation was set: `incomplete` / `interrupted` (client gone, D9) or `cancelled`
  (background cancel, §10.6);
- the backend failed: `failed` / `server_error`, logged with its traceback (§7.4).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tether.backends.base import (
    Backend,
    BackendError,
    Cancellation,
    Finished,
    Generation,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
    cancellable,
)
from tether.core.event_log import EventSink
from tether.protocol import errors, ids
from tether.protocol.events import ResponseEvents
from tether.protocol.response import Usage

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
INTERRUPTED = "interrupted"


@dataclass
class Turn:
    generation: Generation
    events: ResponseEvents
    backend: Backend
    sink: EventSink
    cancel: Cancellation
    input_tokens: int  # counted before the turn started, for usage when it ends early
    generate: bool = True  # False: a warm-up (D2), answered at once; core prefills after it
    # What must be over before the backend starts: the prefill of the warm-up this turn continues
    # (raises `BackendError` if that failed); None when there is none.
    ready: Callable[[], Awaitable[None]] | None = None
    output_deltas: int = 0  # one per streamed token: the usage of a turn that ends early
    usage: Usage | None = None
    started: float = field(default_factory=time.monotonic)
    first_output: float | None = None  # when the first output delta was emitted

    def usage_so_far(self) -> Usage:
        return self.usage or Usage(self.input_tokens, 0, self.output_deltas)


async def run(turn: Turn) -> None:
    """Drive `turn` from `response.created` to its terminal event."""
    try:
        if turn.generate:
            await turn.sink.emit(turn.events.in_progress())
            if turn.ready is not None:
                await cancellable(turn.ready(), turn.cancel)
            if not turn.cancel.is_set:
                await _stream(turn)
        else:
            await _answer_warm_up(turn)
    except BackendError as exc:
        log.warning("backend failed on %s: %s", turn.generation.response_id, exc)
        await _fail(turn, exc.public)
        return
    except Exception:
        log.exception("response %s failed", turn.generation.response_id)
        await _fail(turn, None)
        return
    if turn.usage is None:  # stopped by the cancellation, without `Finished`
        await _end_cancelled(turn)


async def _answer_warm_up(turn: Turn) -> None:
    """D2: exactly `response.created` then `response.completed`, no output, at once. Its usage has
    the context's input tokens and no cached ones: what the prefill that follows finds cached is
    not known yet (the next turn's `cached_tokens` shows what the warm-up prepared)."""
    turn.usage = Usage(turn.input_tokens, 0, 0)
    await turn.sink.emit(turn.events.completed(turn.usage, int(time.time())))


async def _stream(turn: Turn) -> None:
    # `aclosing`: leaving early (cancelled, or a sink error) closes the backend's stream at once,
    # so a local generation stops instead of running on until garbage collection.
    async with contextlib.aclosing(turn.backend.generate(turn.generation, turn.cancel)) as stream:
        async for model_event in stream:
            if turn.cancel.is_set:
                return
            if isinstance(model_event, Finished):
                await _finish(turn, model_event)
                return
            await _apply(turn, model_event)


async def _apply(turn: Turn, model_event: TextDelta | ToolCallStarted | ToolCallDelta) -> None:
    """One model event in, its stream events out."""
    events, emit = turn.events, turn.sink.emit
    if turn.first_output is None:
        turn.first_output = time.monotonic()
    if isinstance(model_event, ToolCallStarted):
        await _close_open(turn, "completed")
        call = events.open_function_call(ids.function_call_id(), ids.call_id(), model_event.name)
        for event in call:
            await emit(event)
        return
    turn.output_deltas += 1
    if isinstance(model_event, ToolCallDelta):
        await emit(events.arguments_delta(model_event.arguments))
        return
    if not model_event.text:
        return
    if not _open_is(events, "message"):
        await _close_open(turn, "completed")
        for event in events.open_message(ids.message_id()):
            await emit(event)
    await emit(events.text_delta(model_event.text))


# Why a response ended `incomplete`, by the backend's finish reason (§6.1 `incomplete_details`).
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


async def _finish(turn: Turn, finished: Finished) -> None:
    turn.usage = finished.usage
    incomplete = _INCOMPLETE_REASONS.get(finished.reason)
    await _close_open(turn, "completed" if incomplete is None else "incomplete")
    if incomplete is not None:
        await turn.sink.emit(turn.events.incomplete(incomplete, finished.usage))
    else:
        await turn.sink.emit(turn.events.completed(finished.usage, int(time.time())))


def _open_is(events: ResponseEvents, item_type: str) -> bool:
    return events.has_open_item and events.output[-1]["type"] == item_type


async def _close_open(turn: Turn, status: str) -> None:
    events = turn.events
    if not events.has_open_item:
        return
    closing = events.close_message if events.output[-1]["type"] == "message" else (events.close_function_call)
    for event in closing(status):
        await turn.sink.emit(event)


async def _end_cancelled(turn: Turn) -> None:
    if turn.cancel.reason == CANCELLED:
        turn.events.cancelled(turn.usage_so_far())
        return
    await turn.sink.emit(turn.events.incomplete(INTERRUPTED, turn.usage_so_far()))


async def _fail(turn: Turn, message: str | None) -> None:
    await turn.sink.emit(turn.events.failed(errors.backend_failed(message), turn.usage_so_far()))
