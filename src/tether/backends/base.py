"""The backend interface: what core asks of a model, and what a model streams back.

    BackendError             the model could not serve the request
    ├── BackendUnavailable   not reachable or not loaded (503 before a response exists)
    └── ContextOverflow      the rendered context does not fit the model (400, param `input`)

A backend never sees JSON: it gets typed items and tools from `tether.protocol` and yields
`ModelEvent`s. What a backend cannot do is a capability, never a stub.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from tether.protocol.items import Item, Message
from tether.protocol.prompt_cache import TTL_SECONDS, Mode
from tether.protocol.resources import ModelDetails
from tether.protocol.response import Usage
from tether.protocol.tools import FunctionTool, ToolChoice

T = TypeVar("T")


class BackendError(Exception):
    """The model failed. Clients see `public` when the backend knows a message safe and useful to
    show them (an upstream's refusal, a timeout), else a generic `server_error`."""

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public


class BackendUnavailable(BackendError):
    pass


class ContextOverflow(BackendError):
    def __init__(self, limit: int, needed: int) -> None:
        super().__init__(f"context needs {needed} tokens, the model holds {limit}")
        self.limit = limit
        self.needed = needed


@dataclass(frozen=True)
class Generation:
    """One response to produce.

    `items` is the whole context, oldest first: the chain's inputs and outputs followed by this
    request's input, with item references and compactions already resolved. `parent_id` names the
    response this one continues, so a backend that cached that prefix (tokens, KV) can reuse it.
    `cache_scope` is whose conversation it is (its tenant): cached state of one scope is never
    reused for another, or one tenant could time or count its way to another's recent prompts.
    """

    response_id: str
    parent_id: str | None
    model: str  # as the client named it: one of the backend's `model_ids`, or an alias
    items: tuple[Item, ...]
    instructions: str | None
    tools: tuple[FunctionTool, ...]
    tool_choice: ToolChoice
    max_output_tokens: int | None
    cache_scope: str
    temperature: float = 1.0
    top_p: float = 1.0
    parallel_tool_calls: bool = True
    prompt_cache_key: str | None = None  # the client's name for a conversation's shared prefix
    origin: str | None = None  # the WebSocket connection that sent it; None over HTTP (for metrics)
    generate: bool = True  # False: a warm-up (D2), which only prepares the context
    cache_ttl_s: float = TTL_SECONDS["30m"]  # keep what it caches at least this long (`ttl`)
    # `implicit`: what it prefills is kept for reuse; `explicit`: only up to its last message
    # marked `prompt_cache_breakpoint` (`kept_items`), nothing without one.
    cache_mode: Mode = "implicit"

    @property
    def kept_items(self) -> int | None:
        """How many of `items` the cache keeps (their prefix); None: all, and the output too."""
        if self.cache_mode == "implicit":
            return None
        marked = [
            index for index, item in enumerate(self.items) if isinstance(item, Message) and item.breakpoint
        ]
        return marked[-1] + 1 if marked else 0


@dataclass(frozen=True)
class Prompt:
    """A generation as one backend renders it for its model, made once per turn by
    `Backend.render` and handed back to `generate` or `prepare`: history-sized work is not done
    twice. Core reads `input_tokens`; only the backend that made it reads `rendered`."""

    generation: Generation
    input_tokens: int
    rendered: object


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ReasoningDelta:
    """The model's thinking before its answer (an engine's `reasoning_content`)."""

    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    name: str


@dataclass(frozen=True)
class ToolCallDelta:
    arguments: str


FinishReason = Literal["stop", "length", "content_filter", "steered"]


@dataclass(frozen=True)
class Finished:
    """Always the last event. `length`: `max_output_tokens` cut the output short;
    `content_filter`: the engine withheld the rest; `steered`: it stopped early at a safe
    boundary because the cancellation said to wrap up (a steer, §8.6)."""

    reason: FinishReason
    usage: Usage


ModelEvent = TextDelta | ReasoningDelta | ToolCallStarted | ToolCallDelta | Finished


@dataclass(frozen=True)
class CacheStats:
    """What a backend keeps of conversations' model state (KV), and how prompts found it, for
    `/metrics`. `prompt_heads`: prompts counted by how the conversation they continue was found
    (`id`: the parent named; `content`: the longest shared history; `none`: rendered whole) and
    whether it was left on the same WebSocket connection (`same`) or not (`another`: another
    connection, or HTTP), as (found, connection, count)."""

    snapshot_bytes: int = 0
    snapshot_budget_bytes: int = 0  # what snapshots may take before the oldest are evicted
    snapshots: int = 0
    evictions: int = 0
    prompt_heads: tuple[tuple[str, str, int], ...] = ()
    snapshot_bytes_copied: int = 0  # KV copied out to snapshots and back in, in all
    early_evictions: int = 0  # snapshots evicted for room within the `ttl` asked for them
    sequences_resident: int = 0  # conversations the context holds now
    threads: int = 0  # CPU threads the engine's steps run on now


@dataclass(frozen=True)
class EngineReach:
    """An engine behind a backend, and whether it can serve now (the inspector shows each)."""

    engine: str  # an upstream's URL, or what runs in this process
    problem: str | None  # why it cannot serve now; None: it can


class Cancellation:
    """How a generation is told to stop; readable from the event loop and from worker threads.

    `cancel`: at once, without `Finished`. A backend that waits on I/O rather than polling between
    tokens registers a callback, so that cancelling also interrupts a wait (an upstream's prefill
    can take seconds without a byte).

    `wrap_up` (a steer, §8.6): at the next safe boundary, as if the model had stopped there, with
    `Finished("steered")` and what was made so far kept like any output (a local engine keeps its
    KV). The boundary is the next token of a text answer; a tool call being written is finished
    first, as half a call is no call. The generation ends normally, so no callback is needed: a
    backend looks at `wrapping_up` as each token comes."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._wrap_up = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self.reason: str | None = None

    def wrap_up(self) -> None:
        self._wrap_up.set()

    @property
    def wrapping_up(self) -> bool:
        return self._wrap_up.is_set()

    def cancel(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()
            for callback in self._callbacks:
                callback()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` when cancelled (at once if already); returns what unregisters it."""
        if self.is_set:
            callback()
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    @property
    def is_set(self) -> bool:
        return self._event.is_set()


async def cancellable(work: Awaitable[T], cancel: Cancellation) -> T | None:
    """`work`'s result, or None when `cancel` was set first (then `work` is cancelled)."""
    task = asyncio.ensure_future(work)
    remove = cancel.on_cancel(threadsafe(task.cancel))
    try:
        await asyncio.wait({task})
    finally:
        remove()
        task.cancel()
    return None if task.cancelled() else task.result()


def threadsafe(callback: Callable[[], object]) -> Callable[[], None]:
    """A cancellation may be set from a worker thread; the loop's own objects are touched on it."""
    loop = asyncio.get_running_loop()

    def call() -> None:
        loop.call_soon_threadsafe(callback)

    return call


class Backend(Protocol):
    @property
    def model_ids(self) -> tuple[str, ...]:
        """The ids clients put in `model` and see in `GET /v1/models`; the first is the default,
        which aliases name."""
        ...

    def model_details(self, model_id: str) -> ModelDetails:
        """What `GET /v1/models` says of one of `model_ids` beyond its name."""
        ...

    async def render(self, generation: Generation) -> Prompt:
        """Render `generation` for the model, without running it: the prompt of its turn (or, for
        a warm-up, of its prefill) and its size. Raises `ContextOverflow` when it cannot fit,
        `BackendUnavailable` when the model cannot be reached: before any response exists."""
        ...

    def generate(self, prompt: Prompt, cancel: Cancellation) -> AsyncGenerator[ModelEvent, None]:
        """Stream the response. Stops within one token once `cancel` is set (no `Finished`)."""
        ...

    async def prepare(self, prompt: Prompt, cancel: Cancellation) -> Usage:
        """Warm-up (`generate: false`, D2): make the conversation's context ready for the next
        turn, without output. Usage has the context's tokens and how many were already cached."""
        ...

    def cache_stats(self) -> CacheStats: ...

    async def check(self) -> None:
        """Raise `BackendUnavailable` when the model cannot serve now (for `/readyz`)."""
        ...

    async def reach(self) -> tuple[EngineReach, ...]:
        """Each engine behind it and whether it can serve now: `check`, engine by engine."""
        ...

    def hold(self, response_id: str) -> None:
        """A live connection will likely continue from this response: keep its state warm."""
        ...

    def release(self, response_id: str) -> None:
        """The connection moved on or closed: its state may go like any other."""
        ...

    async def aclose(self) -> None: ...
