"""The upstream backend: each model served by the OpenAI-compatible engine that has it.

A Responses turn becomes one streaming `/chat/completions` request (`render`), whose chunks
become model events (`chunks`). What keeps the engine fast across a conversation lives in the
engine, so this backend's part is to make hitting it possible: a byte-stable rendering (its
prefix cache), and a session key per conversation (`X-Session-ID` and `user`) so a router keeps
the conversation on the replica that holds that cache.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import TypeVar

from tether.backends.base import (
    BackendError,
    BackendUnavailable,
    CacheStats,
    Cancellation,
    EngineReach,
    Generation,
    ModelEvent,
    Prompt,
    cancellable,
    threadsafe,
)
from tether.backends.upstream.chunks import ChunkDecoder, EndedEarly, usage_of
from tether.backends.upstream.endpoint import Endpoint
from tether.backends.upstream.render import chat_request, encode, estimate_tokens
from tether.config import Upstream
from tether.protocol.resources import ModelDetails
from tether.protocol.response import Usage

log = logging.getLogger(__name__)
T = TypeVar("T")


class UpstreamBackend:
    def __init__(self, routes: dict[str, Endpoint], attempts: int) -> None:
        """`attempts`: tries of a stream that the engine ends before any of it reached the client."""
        if not routes:
            raise ValueError("an upstream backend needs at least one model")
        self._routes = routes  # model id → its engine; the first is the default
        self._attempts = attempts

    @classmethod
    async def connect(cls, upstream: Upstream) -> UpstreamBackend:
        """One endpoint per upstream. A named one may be down at start (its requests get 503s until
        it is up); an unnamed one must answer, since only it can say which models it serves."""
        routes: dict[str, Endpoint] = {}
        for name, url in upstream.routes():
            endpoint = Endpoint(url, upstream)
            names: list[str] = []
            try:
                names = await endpoint.models()
            except BackendError as exc:
                if name is None:
                    await endpoint.aclose()
                    raise BackendUnavailable(
                        f"Cannot reach the upstream engine at {url} ({exc}) to learn which models it "
                        f"serves. Start it first, or name its model: --upstream NAME={url}."
                    ) from None
                log.warning("upstream %s for model %s does not answer yet: %s", url, name, exc)
            if name is None and not names:
                await endpoint.aclose()
                raise BackendUnavailable(
                    f"The upstream engine at {url} lists no models; name one: --upstream NAME={url}."
                )
            for model in [name] if name is not None else names:
                routes.setdefault(model, endpoint)
        return cls(routes, upstream.attempts)

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(self._routes)

    def model_details(self, model_id: str) -> ModelDetails:
        return ModelDetails()  # the engine's to say (its own `/v1/models`)

    async def render(self, generation: Generation) -> Prompt:
        """The exact request the turn (or warm-up) will send, encoded once. Its size is an estimate
        (Chat Completions cannot count), and this is where an engine known to be down is checked
        again before a response exists: still down, a 503."""
        model, endpoint = self._route(generation.model)
        await endpoint.ensure_reachable()
        key = session_key(generation)
        salt = endpoint.cache_salt(generation.cache_scope)
        if generation.generate:
            body = chat_request(generation, model, key, stream=True, cache_salt=salt)
        else:  # D2 on an engine: a one-token completion, so that its prefix cache holds the context
            one_token = dataclasses.replace(generation, max_output_tokens=1)
            body = chat_request(one_token, model, key, stream=False, cache_salt=salt)
        request = ChatRequest(endpoint, key, encode(body))
        return Prompt(generation, estimate_tokens(request.body), request)

    async def generate(self, prompt: Prompt, cancel: Cancellation) -> AsyncGenerator[ModelEvent, None]:
        request = _request_of(prompt)
        for attempt in range(1, self._attempts + 1):
            decoder = ChunkDecoder()
            try:
                async for chunk in until_cancelled(
                    request.endpoint.stream(request.body, request.key), cancel
                ):
                    for event in decoder.feed(chunk):
                        yield event
                    if cancel.wrapping_up and not decoder.calling:
                        # A steer: closing the stream here stops the engine; a call being
                        # written is finished first (`Cancellation`).
                        yield decoder.steered(prompt.input_tokens)
                        return
                if not cancel.is_set:
                    yield decoder.finish(prompt.input_tokens)
                return
            except EndedEarly as exc:
                # Nothing of this stream reached the client: the same request again is safe.
                if decoder.events or attempt == self._attempts:
                    raise
                log.warning(
                    "upstream %s ended a stream early (%s); trying it once more",
                    request.endpoint.base_url,
                    exc,
                )

    async def prepare(self, prompt: Prompt, cancel: Cancellation) -> Usage:
        request = _request_of(prompt)
        completion = await cancellable(request.endpoint.complete(request.body, request.key), cancel)
        usage = usage_of(completion.get("usage") if completion else None, prompt.input_tokens, 0)
        return dataclasses.replace(usage, output_tokens=0)

    def _route(self, model: str) -> tuple[str, Endpoint]:
        """The engine serving `model`; an alias (accepted, not listed here) names the default."""
        endpoint = self._routes.get(model)
        if endpoint is None:
            model, endpoint = next(iter(self._routes.items()))
        return model, endpoint

    def cache_stats(self) -> CacheStats:
        return CacheStats()  # the engines keep the caches, and report them in usage

    async def check(self) -> None:
        """Every engine listens (a TCP connect each)."""
        for endpoint in set(self._routes.values()):
            await endpoint.probe()

    async def reach(self) -> tuple[EngineReach, ...]:
        reached = []
        for endpoint in dict.fromkeys(self._routes.values()):
            try:
                await endpoint.probe()
            except BackendUnavailable as exc:
                reached.append(EngineReach(endpoint.base_url, str(exc)))
            else:
                reached.append(EngineReach(endpoint.base_url, None))
        return tuple(reached)

    def hold(self, response_id: str) -> None:
        """The engine's cache is its own; what Tether does for it is the session key."""

    def release(self, response_id: str) -> None:
        """See `hold`."""

    async def aclose(self) -> None:
        for endpoint in set(self._routes.values()):
            await endpoint.aclose()


@dataclass(frozen=True)
class ChatRequest:
    """A rendered turn: the engine it goes to, its session key, its encoded body."""

    endpoint: Endpoint
    key: str
    body: bytes


def _request_of(prompt: Prompt) -> ChatRequest:
    assert isinstance(prompt.rendered, ChatRequest), "a prompt rendered by another backend"
    return prompt.rendered


def session_key(generation: Generation) -> str:
    """What keeps a conversation on one replica: the client's `prompt_cache_key`, else the id of
    the conversation's first item. That id is given when the chain's root is created and every
    continuation carries it, over any connection and in any Tether process, with no lookup.
    Within the tenant's scope: another tenant naming the same key lands on a session of its own."""
    first = getattr(generation.items[0], "id", None) if generation.items else None
    key = generation.prompt_cache_key or first or generation.response_id
    return f"{generation.cache_scope}:{key}"


async def until_cancelled(source: AsyncIterator[T], cancel: Cancellation) -> AsyncIterator[T]:
    """`source`'s items until it ends or `cancel` is set. Setting it interrupts a wait for the next
    item at once (the source is read by a task that the cancellation cancels)."""
    queue: asyncio.Queue[tuple[T] | Exception | None] = asyncio.Queue()

    async def pump() -> None:
        end: Exception | None = None
        try:
            async for item in source:
                queue.put_nowait((item,))
        except asyncio.CancelledError:
            pass  # only this function cancels the pump
        except Exception as exc:
            end = exc
        queue.put_nowait(end)

    task = asyncio.create_task(pump())
    remove = cancel.on_cancel(threadsafe(task.cancel))
    try:
        while (got := await queue.get()) is not None:
            if isinstance(got, Exception):
                raise got
            yield got[0]
    finally:
        remove()
        task.cancel()
        await asyncio.wait({task})  # not `await task`: that would swallow our own cancellation
