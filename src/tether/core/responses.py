"""The Responses resource: create, retrieve, delete, cancel, list input items, count, compact.

Transports call these and render what comes back; every client error is an `ApiError` raised
before a response exists. Every call names the tenant it acts for: another tenant's response,
running or stored, is answered exactly like an unknown id. A response in flight lives in
`self.running` (`core.running.InFlight`) with its `EventLog`, so a streaming reader, a poller and
a canceller all see the same events. Its life follows `core.lifecycle`. A `store: true` one is
begun in the store before its id reaches anyone and finished there before its terminal event goes
out (a JSON create over HTTP, whose id no one sees before its end, only then), so whoever has
seen an event of it finds it stored, from any process sharing the store
(`core.elsewhere` serves the ones that run in another). Once it has ended it is settled here, in
one place (recorded by its WebSocket connection's cache), and only then leaves `running`, so a
reader never finds it in neither.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson
from opentelemetry.trace import Span

from tether import tracing
from tether.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    Cancellation,
    ContextOverflow,
    Generation,
    Prompt,
)
from tether.core import cache_diagnostics, chain, turn
from tether.core.cache_diagnostics import Shape, shape_of
from tether.core.elsewhere import Elsewhere
from tether.core.event_log import EventLog, FanOut
from tether.core.lifecycle import Outcome, State
from tether.core.metrics import Metrics
from tether.core.running import InFlight, Running, SocketTurn
from tether.core.sealing import ReasoningSeal, readable
from tether.core.stored_contexts import StoredContext, StoredContexts
from tether.core.timeline import TurnRecord, new_http_turns
from tether.core.warm_ups import WarmUps
from tether.logs import RESPONSE_ID
from tether.protocol import compaction, errors, ids, resources
from tether.protocol.events import Event, ResponseEvents
from tether.protocol.items import Compaction, Item, Message, TextPart, as_model_sees
from tether.protocol.prompt_cache import TTL_SECONDS, Diagnostics
from tether.protocol.request import CreateRequest, without_namespaces
from tether.protocol.resources import ModelDetails, Order
from tether.protocol.response import Usage, response_object
from tether.store.base import RUNNING, ItemPage, Signal, Store, StoredResponse, StoreError

log = logging.getLogger(__name__)
# A readiness check that takes longer counts as failed: a probe must answer before the prober
# gives up (load balancers wait 2 to 5 s).
READINESS_CHECK_S = 2.0


@dataclass(frozen=True)
class Readiness:
    store: str | None
    backend: str | None

    @property
    def ready(self) -> bool:
        return self.store is None and self.backend is None


class Responses:
    def __init__(
        self,
        backend: Backend,
        store: Store,
        served_models: frozenset[str],
        metrics: Metrics,
        contexts: StoredContexts,
        lease_s: float,
        seal: ReasoningSeal,
        diagnose_continuations: bool = False,
        tool_namespaces: bool = True,
    ) -> None:
        """`contexts`: where the parsed histories of stored responses are held; `lease_s`: how
        long this process is taken for alive by the others sharing the store without a renewal;
        `seal`: what seals and opens the thinking in reasoning items' `encrypted_content`;
        `diagnose_continuations`: compare every continuation with its parent, asked or not;
        `tool_namespaces`: offer the functions of `namespace` tools (else they are dropped)."""
        self.backend = backend
        self.store = store
        self.served_models = served_models
        self.metrics = metrics
        self.contexts = contexts
        self.seal = seal
        self.diagnose_continuations = diagnose_continuations
        self.tool_namespaces = tool_namespaces
        self.running = InFlight()
        self.shapes = cache_diagnostics.Shapes()
        self.http_turns = new_http_turns()  # the latest HTTP turns, for the inspector
        self.warm_ups = WarmUps()
        self.elsewhere = Elsewhere(store, lease_s)
        store.on_signal(self._heard)
        metrics.watch_backend(backend.cache_stats)
        metrics.watch_running(lambda: len(self.running), lambda: len(self.warm_ups))
        self._tasks: set[asyncio.Task[None]] = set()
        self._keep_alive: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Take this process's lease and end the orphans found now (with SQLite: what a process
        killed before this one left running), then keep doing so in the background."""
        await self.elsewhere.round()
        self._keep_alive = asyncio.create_task(self.elsewhere.keep_alive(), name="keep-alive")

    def _heard(self, kind: Signal, response_id: str) -> None:
        """A signal from a process sharing the store (this one included)."""
        if kind is Signal.CHANGED:
            self.elsewhere.changed(response_id)
            return
        running = self.running.get(response_id)
        if running is None or not running.request.store or running.lifecycle.ended:
            return
        if kind is Signal.PUBLISH and running.publication is None:
            running.publication = asyncio.create_task(self.elsewhere.publish(running))
        elif kind is Signal.CANCEL and running.request.background:
            running.cancel.cancel(turn.CANCELLED)

    # --- create -----------------------------------------------------------------------------------

    def history(self, tenant: str) -> chain.StoredHistory:
        """The tenant's stored chains (a WebSocket's cache falls back to these)."""
        return chain.StoredHistory(self.store, self.running, tenant, self.contexts, self.seal)

    async def start(self, request: CreateRequest, tenant: str, socket: SocketTurn | None = None) -> Running:
        """Validate against state, emit `response.created`, and run the response in a task.

        Over HTTP the parent resolves in the store; a `socket` turn resolves it in its
        connection's cache first, and its events carry its lane's `stream_id` (D4).
        """
        queued_s = 0.0 if socket is None else socket.queued_s
        span = tracing.response_span(socket is not None, queued_s)  # ended by `_execute`
        with tracing.current(span):
            return await self._start(request, tenant, socket, span)

    async def _start(
        self, request: CreateRequest, tenant: str, socket: SocketTurn | None, span: Span
    ) -> Running:
        if not self.tool_namespaces:
            request = without_namespaces(request)
        history = self.history(tenant) if socket is None else socket.cache
        with tracing.phase("chain"):
            context = await self._context(request, tenant, history)
        response_id = ids.response_id()
        tracing.name_response(span, response_id, "http" if socket is None else "ws")
        # Rendered once for the turn; one that cannot fit is refused here.
        origin = None if socket is None else socket.connection
        generation = self._generation(request, context, response_id, tenant, origin)
        with tracing.phase("render"):
            prompt = await self._render(generation)
        parent_shape = self.shapes.get(tenant, request.previous_response_id or "")
        shape = shape_of(generation, request.input, parent_shape)
        diagnose = await self._diagnosis(request, tenant, shape)
        created_at = int(time.time())
        response = response_object(
            request, response_id=response_id, model=str(request.model), created_at=created_at
        )
        log = EventLog()
        sink = log if socket is None else FanOut(log, socket.sender)
        seal = functools.partial(self.seal.seal, tenant=tenant) if request.include_reasoning_blobs else None
        events = ResponseEvents(response, None if socket is None else socket.lane, seal)
        running = Running(response_id, request, tenant, context, events, log, sink, Cancellation(), socket,
                          created_at, shape, parent_shape, span)  # fmt: skip
        created = events.created()
        self.running.add(running)
        begins = request.store and _announced_early(request)
        if begins:
            await self._begin(running, created)
        if socket is not None:
            socket.cache.started(response_id, running.lifecycle)
        await sink.emit(created)
        conclude = functools.partial(self._finish, running, begins) if request.store else None
        prefill = None
        if socket is None and not request.generate:  # an HTTP prewarm: answered once prefilled
            prefill = functools.partial(self.backend.prepare, prompt, running.cancel)
        work = turn.Turn(
            prompt, events, running.lifecycle, self.backend, sink, running.cancel,
            request.generate, ready=self.warm_ups.waiter(request.previous_response_id), conclude=conclude,
            asides=running.asides, prefill=prefill, diagnose=diagnose, tools=request.tools,
        )  # fmt: skip
        running.task = asyncio.create_task(self._execute(running, work), name=response_id)
        self._tasks.add(running.task)
        running.task.add_done_callback(self._tasks.discard)
        return running

    async def _diagnosis(
        self, request: CreateRequest, tenant: str, shape: Shape
    ) -> Callable[[Usage], Diagnostics] | None:
        """What `prompt_cache_diagnostics` a request asked for says, given its usage; None when
        it asked for none."""
        compared = request.prompt_cache.comparison_response_id
        if compared is None and self.diagnose_continuations:
            compared = request.previous_response_id
        if compared is None:
            return None
        comparison = self.shapes.get(tenant, compared)
        if comparison is not None:
            return functools.partial(self._diagnosed, shape, comparison)
        try:
            known = self.running.visible(compared, tenant) is not None or await self.store.get(
                compared, tenant
            )
        except StoreError:
            known = True  # it may exist: what is certain is that its shape is not here
        said = Diagnostics("unavailable" if known else "comparison_response_not_found")
        return lambda _: said

    def _diagnosed(self, shape: Shape, comparison: Shape, usage: Usage) -> Diagnostics:
        diagnostics = cache_diagnostics.diagnose(shape, comparison, usage)
        if diagnostics.reason is not None:
            self.metrics.cache_missed(diagnostics.reason)
        return diagnostics

    def _check_model(self, model: str | None) -> None:
        if model not in self.served_models:
            raise errors.model_not_found(model, ", ".join(sorted(self.served_models)))

    @staticmethod
    def _generation(
        request: CreateRequest,
        context: chain.Context,
        response_id: str,
        tenant: str,
        origin: str | None = None,
    ) -> Generation:
        return Generation(
            response_id=response_id,
            parent_id=request.previous_response_id,
            model=str(request.model),
            items=tuple(as_model_sees(item) for item in context.items),
            instructions=request.instructions,
            tools=tuple(tool.as_model_sees() for tool in request.tools),
            tool_choice=request.tool_choice,
            max_output_tokens=request.max_output_tokens,
            cache_scope=tenant,
            temperature=request.temperature,
            top_p=request.top_p,
            parallel_tool_calls=request.parallel_tool_calls,
            prompt_cache_key=request.prompt_cache_key,
            generate=request.generate,
            origin=origin,
            cache_ttl_s=TTL_SECONDS[request.prompt_cache.ttl],
            cache_mode=request.prompt_cache.mode,
        )

    async def _execute(self, running: Running, work: turn.Turn) -> None:
        response_id = RESPONSE_ID.set(running.id)  # on the lines logged while it runs
        try:
            await self._run_and_settle(running, work)
        finally:
            RESPONSE_ID.reset(response_id)
            outcome = running.lifecycle.outcome
            tracing.end_response(running.span, "unknown" if outcome is None else outcome.status.value)

    async def _run_and_settle(self, running: Running, work: turn.Turn) -> None:
        prefilled = work.prefill is not None  # in the turn, before its answer
        try:
            asked = running.request
            with tracing.generation(str(asked.model), running.id, asked.temperature, asked.top_p) as span:
                await turn.run(work)
                used = work.usage_so_far()
                tracing.record_usage(span, used.input_tokens, used.cached_tokens, used.output_tokens)
            if work.generate or prefilled:
                self._measure(running, work)
        finally:
            await self._settle(running)
        outcome = running.lifecycle.outcome
        if not work.generate and not prefilled and outcome is not None and outcome.status is State.COMPLETED:
            prefill = self.backend.prepare(work.prompt, work.cancel)
            usage = await self.warm_ups.prefill(running.id, prefill, work.cancel)
            if usage is not None:
                work.usage = usage
                self._measure(running, work)

    async def _begin(self, running: Running, created: Event) -> None:
        """Store a `store: true` response as it starts; one that cannot be stored is refused."""
        begun = self._record(running, (created,), ())
        try:
            await self.store.save(begun)
        except StoreError as exc:
            self.running.remove(running)
            log.warning("could not store response %s as it started: %s", running.id, exc)
            raise errors.store_unavailable() from None

    async def _finish(
        self, running: Running, begun: bool, outcome: Outcome, terminal: Event | None
    ) -> turn.Concluded | None:
        """Store a `store: true` response that has ended, before its terminal event goes out (whole,
        unless it was `begun`). When another process has already ended it (it took this one for
        dead: its lease lapsed), the store's end stands, and it is what the client is told too,
        so that the two agree."""
        if running.publication is not None:
            running.publication.cancel()
            await asyncio.gather(running.publication, return_exceptions=True)
        sent = running.log.events
        record = self._record(running, sent if terminal is None else [*sent, terminal], outcome.output)
        try:
            # Under the response's span: the turn asks for it from within its generation's.
            with tracing.phase("store", of=running.span):
                if not begun:
                    await self.store.save(record)
                    return None
                if await self.store.finish(record):
                    return None
                stored = await self.store.get(running.id, running.tenant)
        except Exception:
            log.exception("could not store response %s", running.id)
            return None
        log.warning("response %s was ended as an orphan by another process while this one, its lease "
                    "lapsed, finished it; its client is told the stored end", running.id)  # fmt: skip
        if stored is None:  # deleted since
            return None
        error = errors.owner_stopped()
        failed = Outcome(State.FAILED, (), outcome.usage, error)
        return turn.Concluded(failed, None if terminal is None else running.events.superseded(stored))

    def _record(self, running: Running, sent: Sequence[Event], output: tuple[Item, ...]) -> StoredResponse:
        response = running.snapshot()
        return StoredResponse(
            id=running.id,
            tenant=running.tenant,
            previous_response_id=running.request.previous_response_id,
            status=resources.status_of(response),
            created_at=running.created_at,
            response=response,
            input_items=tuple(item.to_wire() for item in running.context.input),
            output_items=tuple(item.to_wire() for item in output),
            events=tuple(sent),
        )

    async def _settle(self, running: Running) -> None:
        """The one end of every response: recorded by its connection's cache (§8.2), its parsed
        history held (`store: true`), out of `running`, then SETTLED, which wakes whoever waits
        for it. (A `store: true` one was stored before its terminal event went out.)"""
        await running.log.close()
        outcome = running.lifecycle.outcome
        assert outcome is not None, f"response {running.id} settles without having ended"
        try:
            if outcome.chainable:
                self.shapes.put(
                    running.tenant, running.id, cache_diagnostics.extended(running.shape, outcome.output)
                )
            if running.request.store:
                self._hold(running, outcome)
        finally:
            if running.socket is not None:
                parent = running.request.previous_response_id
                running.socket.cache.record(running.socket.lane, parent, running.id,
                                            running.context.items, outcome)  # fmt: skip
            self.running.remove(running)
            running.lifecycle.settle()

    def _hold(self, running: Running, outcome: Outcome) -> None:
        """Keep a stored response's parsed history, when its parent's lineage is known here (a
        parent read from the store, or stored by this process, is)."""
        if not outcome.chainable:
            return
        parent_id = running.request.previous_response_id
        parent = None if parent_id is None else self.contexts.get(parent_id, running.tenant)
        if parent_id is not None and parent is None:
            return
        new = running.context.input + outcome.output
        size = (0 if parent is None else parent.size) + len(orjson.dumps([item.to_wire() for item in new]))
        lineage = (() if parent is None else parent.lineage) + (running.id,)
        held = StoredContext(running.tenant, running.context.items + outcome.output, lineage, size)
        self.contexts.put(running.id, held)

    def _measure(self, running: Running, work: turn.Turn) -> None:
        now = time.monotonic()
        first = None if work.first_output is None else work.first_output - work.started
        outcome = running.lifecycle.outcome
        status = "unknown" if outcome is None else outcome.status.value
        transport = "http" if running.socket is None else "ws"
        self.metrics.turn_finished(transport, status, work.usage, now - work.started, first)
        usage, first_output = work.usage_so_far(), "-" if first is None else f"{first:.3f} s"
        socket = running.socket
        # A continuation's record says why it missed its parent's cache, asked for or not (what
        # the client was sent, and `/metrics`, stay as it asked).
        diagnostics = work.diagnostics
        if diagnostics is None and running.parent_shape is not None:
            diagnostics = cache_diagnostics.diagnose(running.shape, running.parent_shape, usage)
        record = TurnRecord(
            running.id, running.request.previous_response_id, None if socket is None else socket.lane, status,
            time.time(), 0.0 if socket is None else socket.queued_s, now - work.started, first,
            usage.input_tokens, usage.cached_tokens, usage.output_tokens, diagnostics,
            running.request.store, not work.generate,
        )  # fmt: skip
        if socket is None:
            self.http_turns.append((running.tenant, record))
        else:
            socket.timeline.append(record)
        log.info("%s %s over %s in %.3f s, first output at %s: %d input tokens (%d cached), %d output",
                 running.id, status, transport, now - work.started, first_output,
                 usage.input_tokens, usage.cached_tokens, usage.output_tokens)  # fmt: skip

    # --- read, delete, cancel ---------------------------------------------------------------------

    async def get(self, response_id: str, tenant: str) -> dict[str, Any]:
        running = self.running.visible(response_id, tenant)
        if running is not None:
            return running.snapshot()
        stored = await self.store.get(response_id, tenant)
        if stored is None:
            raise errors.response_not_found(response_id)
        return stored

    async def replay(self, response_id: str, tenant: str, starting_after: int) -> AsyncIterator[Event]:
        """Events after `starting_after`: live for a running response, else from the store.

        Raises before the first event when the id is unknown, so transports can still answer 404.
        """
        running = self.running.visible(response_id, tenant)
        if running is not None:
            return running.log.follow(starting_after)
        progress = await self.store.progress(response_id, tenant, starting_after)
        if progress is None:
            raise errors.response_not_found(response_id)
        if progress.status in RUNNING:  # in another process
            return self.elsewhere.follow(response_id, tenant, starting_after)
        return _iterate(progress.events)

    async def delete(self, response_id: str, tenant: str) -> None:
        if self.running.visible(response_id, tenant) is not None:
            raise _in_progress(response_id)
        stored = await self.get(response_id, tenant)
        if resources.status_of(stored) in RUNNING:  # in another process
            raise _in_progress(response_id)
        self.contexts.forget(response_id)
        if not await self.store.delete(response_id, tenant):
            raise errors.response_not_found(response_id)

    async def cancel(self, response_id: str, tenant: str) -> dict[str, Any]:
        """Cancel a background response; idempotent, and a finished one is returned as it is."""
        running = self.running.visible(response_id, tenant)
        if running is not None:
            if not running.request.background:
                raise _not_background(response_id)
            running.cancel.cancel(turn.CANCELLED)
            await running.lifecycle.settled()
            return running.snapshot()
        stored = await self.get(response_id, tenant)
        if not resources.is_background(stored):
            raise _not_background(response_id)
        if resources.status_of(stored) not in RUNNING:
            return stored
        ended = await self.elsewhere.cancel(response_id, tenant)  # it runs in another process
        if ended is None:  # deleted meanwhile
            raise errors.response_not_found(response_id)
        return ended

    async def input_items(
        self, response_id: str, tenant: str, *, after: str | None, limit: int, order: Order
    ) -> ItemPage:
        running = self.running.visible(response_id, tenant)
        if running is not None:
            wire = [item.to_wire() for item in running.context.input]
            items, has_more = resources.page(wire, after, limit, order)
            return ItemPage(items=items, has_more=has_more)
        page = await self.store.input_items(response_id, tenant, after=after, limit=limit, order=order)
        if page is None:
            raise errors.response_not_found(response_id)
        return page

    # --- counting and compaction ------------------------------------------------------------------

    async def count_input_tokens(self, request: CreateRequest, tenant: str) -> int:
        context = await self._context(request, tenant, self.history(tenant))
        return (await self._render(self._generation(request, context, "count", tenant))).input_tokens

    async def compact(self, request: CreateRequest, tenant: str) -> dict[str, Any]:
        """A compacted window: the user's messages, then one item standing for everything else."""
        context = await self._context(request, tenant, self.history(tenant))
        prompt = await self._render(self._generation(request, context, "count", tenant))
        user = tuple(i for i in context.items if isinstance(i, Message) and i.role == "user")
        rest = tuple(i for i in context.items if i not in user)
        window = Compaction(compaction.encode(rest), id=ids.compaction_id())
        output = (*(_as_output(m) for m in user), window)
        usage = Usage(prompt.input_tokens, 0, 0)
        return resources.compacted(ids.compaction_id(), int(time.time()), output, usage)

    def model_details(self, name: str) -> ModelDetails:
        """What `GET /v1/models` says of a model it serves (an alias: of the model it names)."""
        ids = self.backend.model_ids
        return self.backend.model_details(name if name in ids else ids[0])

    async def _context(self, request: CreateRequest, tenant: str, history: chain.History) -> chain.Context:
        self._check_model(request.model)
        context = await chain.resolve(request.previous_response_id, request.input, history)
        return replace(context, input=readable(context.input, self.seal, tenant))

    async def _render(self, generation: Generation) -> Prompt:
        try:
            return await self.backend.render(generation)
        except ContextOverflow as exc:
            raise errors.context_overflow(exc.limit, exc.needed) from None
        except BackendUnavailable as exc:
            # Before any response exists: a 503 the SDKs retry (e.g. a restarting engine).
            raise errors.backend_unavailable(exc.public) from None

    async def readiness(self) -> Readiness:
        """What is wrong with the store and with the model now (None: nothing). Only that a part
        failed is said; the log says why."""
        return Readiness(
            store=await self.store_problem(), backend=await _problem("backend", self.backend.check())
        )

    async def store_problem(self) -> str | None:
        """What is wrong with the store now (None: nothing): `readiness`'s first half."""
        return await _problem("store", self.store.check())

    def interrupt_all(self) -> None:
        """End everything still running as `incomplete` / `interrupted` (each reader of a stream
        still gets that terminal event), and stop the prefills of warm-ups."""
        for running in self.running:
            running.cancel.cancel(turn.INTERRUPTED)
        self.warm_ups.cancel_all()

    async def aclose(self) -> None:
        """Interrupt what is still running and wait for it to be stored; stop renewing the lease."""
        self.interrupt_all()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._keep_alive is not None:
            self._keep_alive.cancel()
            await asyncio.gather(self._keep_alive, return_exceptions=True)


def _as_output(message: Message) -> Item:
    """A user message of the window as a complete output item: its id, a status, input parts."""
    parts = tuple(TextPart("input_text", p.text) if isinstance(p, TextPart) else p for p in message.content)
    return replace(message, content=parts, id=message.id or ids.message_id(), status="completed")


async def _problem(part: str, check: Awaitable[None]) -> str | None:
    try:
        await asyncio.wait_for(check, READINESS_CHECK_S)
    except (StoreError, BackendError, TimeoutError) as exc:
        log.warning("not ready: the %s check failed: %s", part, exc or "it timed out")
        return "unavailable"
    return None


def _announced_early(request: CreateRequest) -> bool:
    """Whether a response's id reaches someone before it ends, which makes it worth storing as it
    begins: a JSON create over HTTP tells its id to no one before then, so it is stored once, at
    its end, and a process killed before that leaves nothing behind."""
    return request.stream or request.background


def _in_progress(response_id: str) -> errors.ApiError:
    return errors.invalid_request(
        f"Response with id '{response_id}' is still in progress; cancel it or wait.", None
    )


def _not_background(response_id: str) -> errors.ApiError:
    return errors.invalid_request(
        f"Response with id '{response_id}' was not created with 'background: true'; "
        "only background responses can be cancelled.",
        None,
    )


async def _iterate(events: list[Event]) -> AsyncIterator[Event]:
    for event in events:
        yield event
