"""Run one response: drive the backend, turn its model events into stream events, end it once.

A turn always reaches exactly one terminal state (§5.1), a move of its `Lifecycle` made together
with the terminal event, and leaves its typed `Outcome` there:
- the backend finished: `completed`, or `incomplete` / `max_output_tokens` when it was cut short,
  `incomplete` / `steered` when a steer stopped it at a safe boundary (§8.6);
- the cancellation was set: `incomplete` / `interrupted` (client gone, D9) or `cancelled`
  (background cancel, §10.6);
- the backend failed: `failed` / `server_error`, logged with its traceback (§7.4).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tether.backends.base import (
    Backend,
    BackendError,
    Cancellation,
    Finished,
    Prompt,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
    cancellable,
)
from tether.core.event_log import Event, EventSink
from tether.core.lifecycle import Lifecycle, Outcome, State
from tether.protocol import errors, ids
from tether.protocol.errors import ApiError
from tether.protocol.events import ResponseEvents
from tether.protocol.prompt_cache import Diagnostics
from tether.protocol.response import Usage, incomplete_reason
from tether.protocol.tools import FunctionTool

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Concluded:
    """The end the store holds for a response, when it is not the one the turn reached (another
    process ended it as an orphan while this one, taken for dead, went on)."""

    outcome: Outcome
    event: Event | None


@dataclass
class Turn:
    prompt: Prompt  # the generation, rendered by the backend before `response.created`
    events: ResponseEvents
    lifecycle: Lifecycle
    backend: Backend
    sink: EventSink
    cancel: Cancellation
    generate: bool = True  # False: a warm-up (D2), answered at once; core prefills after it
    # A warm-up whose answer waits for its prefill, to report what it cached and wrote: over
    # HTTP, where no client gives up on a slow answer (a WebSocket's may, D2); None: at once.
    prefill: Callable[[], Awaitable[Usage]] | None = None
    # `prompt_cache_diagnostics` from its usage, when the request asked for them (None: not).
    diagnose: Callable[[Usage], Diagnostics] | None = None
    tools: tuple[FunctionTool, ...] = ()  # the request's, as the client sent them
    # What must be over before the backend starts: the prefill of the warm-up this turn continues
    # (raises `BackendError` if that failed); None when there is none.
    ready: Callable[[], Awaitable[None]] | None = None
    # What must be done once it has ended and before its terminal event goes out (store it, so
    # that whoever reads that event finds it stored, on any process); None: nothing. It may
    # answer another end to report instead: the one the store already holds (`Concluded`).
    conclude: Callable[[Outcome, Event | None], Awaitable[Concluded | None]] | None = None
    # What others have to say about this response while it runs (a steer's replies, §5.2), each
    # built when called: the turn emits them between its own events, so that their numbers,
    # taken from this response's sequence, go out in order. What is left when it ends is said
    # after its terminal event, by whoever queued it.
    asides: deque[Callable[[], Event]] = field(default_factory=deque)
    output_deltas: int = 0  # one per streamed token: the usage of a turn that ends early
    usage: Usage | None = None
    diagnostics: Diagnostics | None = None  # what `diagnose` said, once it has
    started: float = field(default_factory=time.monotonic)
    first_output: float | None = None  # when the first output delta was emitted

    def called(self, name: str) -> FunctionTool | None:
        """The tool a model's call names (by its model name), if the request offered it."""
        return next((tool for tool in self.tools if tool.model_name == name), None)

    def usage_so_far(self) -> Usage:
        return self.usage or Usage(self.prompt.input_tokens, 0, self.output_deltas)


async def run(turn: Turn) -> None:
    """Drive `turn` from `response.created` to its terminal event."""
    try:
        if turn.generate:
            turn.lifecycle.start()
            await turn.sink.emit(turn.events.in_progress())
            if turn.ready is not None:
                await cancellable(turn.ready(), turn.cancel)
            if not turn.cancel.is_set:
                await _stream(turn)
        else:
            await _answer_warm_up(turn)
    except BackendError as exc:
        log.warning("backend failed on %s: %s", turn.prompt.generation.response_id, exc)
        await _fail(turn, exc.public)
        return
    except Exception:
        log.exception("response %s failed", turn.prompt.generation.response_id)
        await _fail(turn, None)
        return
    if not turn.lifecycle.ended:  # stopped by the cancellation, without `Finished`
        await _end_cancelled(turn)


async def _answer_warm_up(turn: Turn) -> None:
    """D2: exactly `response.created` then `response.completed`, no output, at once. Its usage has
    the context's input tokens and no cached ones: what the prefill that follows finds cached is
    not known yet (the next turn's `cached_tokens` shows what the warm-up prepared). One with a
    `prefill` answers once that is over, with its usage."""
    if turn.prefill is not None:
        usage = await cancellable(turn.prefill(), turn.cancel)
        if usage is None:  # cancelled: ended as such by `run`
            return
        turn.usage = usage
    else:
        turn.usage = Usage(turn.prompt.input_tokens, 0, 0)
    _diagnose(turn)
    await _end(turn, State.COMPLETED, turn.events.completed(turn.usage, int(time.time())))


async def _stream(turn: Turn) -> None:
    # `aclosing`: leaving early (cancelled, or a sink error) closes the backend's stream at once,
    # so a local generation stops instead of running on until garbage collection.
    async with contextlib.aclosing(turn.backend.generate(turn.prompt, turn.cancel)) as stream:
        async for model_event in stream:
            if turn.cancel.is_set:
                return
            if isinstance(model_event, Finished):
                await _finish(turn, model_event)
                return
            await _apply(turn, model_event)


async def _apply(
    turn: Turn, model_event: TextDelta | ReasoningDelta | ToolCallStarted | ToolCallDelta
) -> None:
    """One model event in, its stream events out."""
    await _say_asides(turn)
    events = turn.events
    if turn.first_output is None:
        turn.first_output = time.monotonic()
    if isinstance(model_event, ToolCallStarted):
        closed = events.close_open("completed")
        tool = turn.called(model_event.name)
        custom = tool is not None and tool.custom
        name = model_event.name if tool is None else tool.name
        namespace = None if tool is None or tool.namespace is None else tool.namespace.name
        item_id = ids.custom_tool_call_id() if custom else ids.function_call_id()
        call = events.open_function_call(item_id, ids.call_id(), name, custom, namespace)
        await _emit_all(turn, [*closed, *call])
        return
    turn.output_deltas += 1
    if isinstance(model_event, ReasoningDelta):
        opened: list[Event] = []
        if events.open_item_type != "reasoning":
            opened = [*events.close_open("completed"), *events.open_reasoning(ids.reasoning_id())]
        await _emit_all(turn, [*opened, events.reasoning_delta(model_event.text)])
        return
    if isinstance(model_event, ToolCallDelta):
        await _emit_all(turn, events.arguments_delta(model_event.arguments))
        return
    if not model_event.text:
        return
    if events.open_item_type != "message":
        closed = events.close_open("completed")
        await _emit_all(turn, [*closed, *events.open_message(ids.message_id())])
    await turn.sink.emit(events.text_delta(model_event.text))


async def _finish(turn: Turn, finished: Finished) -> None:
    await _say_asides(turn)
    turn.usage = finished.usage
    _diagnose(turn)
    reason = incomplete_reason(finished.reason)
    await _emit_all(turn, turn.events.close_open("completed" if reason is None else "incomplete"))
    if reason is not None:
        await _end(turn, State.INCOMPLETE, turn.events.incomplete(reason, finished.usage))
    else:
        await _end(turn, State.COMPLETED, turn.events.completed(finished.usage, int(time.time())))


async def _end_cancelled(turn: Turn) -> None:
    usage = turn.usage_so_far()
    if turn.cancel.reason == CANCELLED:
        turn.events.cancelled(usage)  # §6.2: a cancelled background response's stream just ends
        await _end(turn, State.CANCELLED, None)
        return
    await _end(turn, State.INCOMPLETE, turn.events.incomplete(INTERRUPTED, usage))


async def _fail(turn: Turn, message: str | None) -> None:
    if turn.lifecycle.ended:  # it failed sending its terminal event: nothing more can be said
        return
    error = errors.backend_failed(message)
    await _end(turn, State.FAILED, turn.events.failed(error, turn.usage_so_far()), error)


async def _end(turn: Turn, status: State, event: Event | None, error: ApiError | None = None) -> None:
    """The one way a turn ends: concluded, its outcome kept, then its terminal event goes out."""
    turn.usage = turn.usage_so_far()
    outcome = Outcome(status, turn.events.output_items, turn.usage, error)
    if turn.conclude is not None:
        concluded = await turn.conclude(outcome, event)
        if concluded is not None:
            outcome, event = concluded.outcome, concluded.event
    turn.lifecycle.end(outcome)
    if event is not None:
        await turn.sink.emit(event)


def _diagnose(turn: Turn) -> None:
    if turn.diagnose is not None and turn.usage is not None:
        turn.diagnostics = turn.diagnose(turn.usage)
        turn.events.diagnosed(turn.diagnostics)


async def _say_asides(turn: Turn) -> None:
    while turn.asides:
        await turn.sink.emit(turn.asides.popleft()())


async def _emit_all(turn: Turn, events: list[Event]) -> None:
    for event in events:
        await turn.sink.emit(event)
