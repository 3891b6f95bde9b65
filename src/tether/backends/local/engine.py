"""`LocalBackend`: SmolLM2 (or any ChatML GGUF) run in-process by llama-cpp-python.

One `Llama` holds one KV context, so generations take turns on a single worker thread; requests
queue in arrival order. Tokenising (for prompts and `count_tokens`) runs on a second thread so
that a long generation does not delay another request's context check. The event loop only moves
events: the worker hands each one over with `call_soon_threadsafe`.

Incremental turns (`memory.py`): every finished conversation leaves its exact token ids, and a
prompt starts with those of the conversation it continues, found by the parent's id or by its
content (`jobs.py`), then renders the new items only. The context keeps whatever prefix of a new
prompt it already holds and prefills the rest. When a different conversation is about to
displace the resident one, the resident's KV is snapshotted first; a prompt restores the
snapshot sharing its longest token prefix when that beats what the context holds.
`cached_tokens` is exactly what was not prefilled.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import threading
from array import array
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import llama_cpp
from llama_cpp import Llama
from llama_cpp.llama_grammar import LlamaGrammar

from tether.backends.base import (
    BackendError,
    BackendUnavailable,
    CacheStats,
    Cancellation,
    Finished,
    Generation,
    ModelEvent,
    Prompt,
    TextDelta,
    ToolCallDelta,
    ToolCallStarted,
)
from tether.backends.local.batches import Span, batches, merged, within
from tether.backends.local.chatml import Block, ChatML, forced_tools, tool_call_text
from tether.backends.local.grammar import parse_partial_tool_call, parse_tool_call, tool_call_grammar
from tether.backends.local.jobs import Found, Job, Left, build
from tether.backends.local.layout import fastest
from tether.backends.local.memory import (
    KvSnapshot,
    KvSnapshots,
    TokenRecord,
    TokenRecords,
    capture,
    forget_from,
    restore,
)
from tether.backends.local.model_file import locate
from tether.backends.local.prefix import common_prefix, following
from tether.backends.local.threads import ThreadCount
from tether.config import LocalEngine
from tether.protocol.response import Usage

# Prefill in slices this long so a cancellation stops a long prompt within a fraction of a second;
# measured: slices of 64 prefill as fast as the default batch of 512.
_PREFILL_SLICE = 64

# Tokens the model thread may run ahead of the consumer (see `generate`).
_HANDOFF_EVENTS = 64
_CREDIT_POLL_S = 0.1  # how often a waiting model thread checks for a cancellation

_T = TypeVar("_T")

log = logging.getLogger(__name__)

# What the worker hands the consumer: events, an error to raise, or None for "no more".
_Handoff = ModelEvent | BaseException | None


class LocalBackend:
    """Build with `LocalBackend.load(...)`; close with `await backend.aclose()`."""

    def __init__(self, llm: Llama, model_id: str, engine: LocalEngine) -> None:
        self._llm = llm
        self._model_id = model_id
        self._chatml = ChatML(llm)
        self.records = TokenRecords(engine.token_record_bytes)
        self.snapshots = KvSnapshots(engine.kv_cache_bytes)
        self._resident: str | None = None  # the response whose conversation the context holds
        self._scope: str | None = None  # whose tokens the context holds (see `Generation.cache_scope`)
        self._singles: tuple[Span, ...] = ()  # positions the context evaluated one at a time
        self._heads: Counter[tuple[Found, Left]] = Counter()  # prompts by how their head was found
        self._copied = 0  # bytes of KV copied out to snapshots and back in
        self._applied_threads = engine.n_threads  # what the context runs on now
        self.threads = ThreadCount(engine.n_threads, engine.tune_threads)
        self._end_of_turn = frozenset({self._chatml.end_of_turn, llm.token_eos()})
        self._model_thread = ThreadPoolExecutor(1, thread_name_prefix="tether-llama")
        self._tokenizer_thread = ThreadPoolExecutor(1, thread_name_prefix="tether-tokenize")
        self._closing = threading.Event()

    @classmethod
    def load(cls, engine: LocalEngine, model_path: str | Path | None = None) -> LocalBackend:
        """Load the default SmolLM2 file, or the `.gguf` at `model_path` (~0.2 s, mmap).

        The engine's `n_ctx` is capped at the context the model was trained for."""
        model = locate(model_path)
        layout = fastest(model.path, engine.n_threads) if engine.fastest_weights else None
        path = model.path if layout is None else layout.path
        log.info(
            "weights: %s",
            "as shipped (--no-fastest-weights)" if layout is None else f"{layout.name}: {layout.reason}",
        )
        llm = _open(path, engine.n_ctx, engine.n_threads)
        trained = _trained_context(llm)
        if trained is not None and engine.n_ctx > trained:
            llm.close()
            llm = _open(path, trained, engine.n_threads)
        return cls(llm, model.model_id, engine)

    @property
    def model_ids(self) -> tuple[str, ...]:
        return (self._model_id,)

    @property
    def n_ctx(self) -> int:
        """Tokens the context holds: prompt and answer together."""
        return int(self._llm.n_ctx())

    @property
    def context_tokens(self) -> int:
        """Tokens in the context now: how far the last prefill and generation went."""
        return int(self._llm.n_tokens)

    async def render(self, generation: Generation) -> Prompt:
        """The job's tokens, built on the tokenizer thread (a turn's prompt opens the model's
        reply; a warm-up's does not)."""
        job = await self._build(generation)
        return Prompt(generation, len(job.prompt), job)

    async def _build(self, generation: Generation) -> Job:
        return await asyncio.wrap_future(self._submit(self._tokenizer_thread, self._job, generation))

    async def _job_of(self, prompt: Prompt) -> Job:
        """The prompt's job, built again only when its parent's token record appeared since (a
        warm-up's prefill that was still running): then it starts from those very tokens."""
        job = prompt.rendered
        assert isinstance(job, Job), "a prompt rendered by another backend"
        if not job.parent_recorded and self.records.get(job.parent_id) is not None:
            return await self._build(prompt.generation)
        return job

    def cache_stats(self) -> CacheStats:
        snapshots = self.snapshots
        return CacheStats(
            snapshot_bytes=snapshots.bytes,
            snapshots=len(snapshots),
            evictions=snapshots.evictions,
            prompt_heads=tuple((found, left, count) for (found, left), count in self._heads.items()),
            snapshot_bytes_copied=self._copied,
            sequences_resident=int(self._llm.n_tokens > 0),
            threads=self.threads.now,
        )

    async def check(self) -> None:
        if self._closing.is_set():
            raise BackendUnavailable("the local model is shutting down")

    def hold(self, response_id: str) -> None:
        self.snapshots.hold(response_id)

    def release(self, response_id: str) -> None:
        self.snapshots.release(response_id)

    async def generate(self, prompt: Prompt, cancel: Cancellation) -> AsyncGenerator[ModelEvent, None]:
        job = await self._job_of(prompt)
        forced = forced_tools(prompt.generation)
        grammar = tool_call_grammar(forced) if forced else None
        loop = asyncio.get_running_loop()
        handoff: asyncio.Queue[_Handoff] = asyncio.Queue()
        abandoned = threading.Event()  # set when the consumer stops listening
        # Credits bound the tokens in flight: when the consumer (and so the client) is slow,
        # the model thread waits here instead of filling memory. The end of the stream and
        # errors need no credit, so they always get through.
        credits = threading.Semaphore(_HANDOFF_EVENTS)

        def emit(item: _Handoff) -> None:
            if isinstance(item, TextDelta | ToolCallStarted | ToolCallDelta):
                while not credits.acquire(timeout=_CREDIT_POLL_S):
                    if abandoned.is_set() or cancel.is_set:
                        return
            try:
                loop.call_soon_threadsafe(handoff.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is left to listen
                abandoned.set()

        def stopped() -> bool:
            return cancel.is_set or abandoned.is_set() or self._closing.is_set()

        self._submit(self._model_thread, self._work, job, grammar, stopped, emit)
        try:
            while (item := await handoff.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if cancel.is_set:
                    return
                yield item
                credits.release()
        finally:
            abandoned.set()

    async def prepare(self, prompt: Prompt, cancel: Cancellation) -> Usage:
        """Warm-up (`generate: false`): prefill the conversation so the next turn starts warm."""
        job = await self._job_of(prompt)
        cached = await asyncio.wrap_future(
            self._submit(self._model_thread, self._warm, job, lambda: cancel.is_set)
        )
        return Usage(input_tokens=len(job.prompt), cached_tokens=cached or 0, output_tokens=0)

    async def aclose(self) -> None:
        """Stop running work (its consumers get `BackendUnavailable`) and free the model."""
        if self._closing.is_set():
            return
        self._closing.set()
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        # Queued jobs still run, see `_closing` and end at once; only then is the model freed.
        self._tokenizer_thread.shutdown(wait=True)
        self._model_thread.shutdown(wait=True)
        self._llm.close()

    def _submit(self, pool: ThreadPoolExecutor, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        if self._closing.is_set():
            raise BackendUnavailable("the local model is shutting down")
        try:
            return pool.submit(fn, *args)
        except RuntimeError as exc:  # shut down between the check and the submit
            raise BackendUnavailable("the local model is shutting down") from exc

    # --- on the tokenizer thread ------------------------------------------------------------------

    def _job(self, generation: Generation) -> Job:
        return build(generation, self._chatml, self.records, self.n_ctx, opening=generation.generate)

    # --- on the model thread ----------------------------------------------------------------------

    def _work(
        self,
        job: Job,
        grammar: LlamaGrammar | None,
        stopped: Callable[[], bool],
        emit: Callable[[_Handoff], None],
    ) -> None:
        try:
            finished = not self._closing.is_set() and self._run(job, grammar, stopped, emit)
            if not finished and self._closing.is_set():
                emit(BackendUnavailable("the local model was shut down"))
        except Exception as exc:  # every failure must reach the consumer, not the executor
            emit(exc)
        finally:
            emit(None)

    def _run(
        self,
        job: Job,
        grammar: LlamaGrammar | None,
        stopped: Callable[[], bool],
        emit: Callable[[_Handoff], None],
    ) -> bool:
        """Generate `job`; True once `Finished` is emitted, False if stopped first."""
        try:
            # `Llama.generate` must decode at least one token to sample from: leave it the last.
            cached = self._load(job, job.prompt[:-1], stopped)
            if cached is None:
                return False
            produced, reason, text, tail = self._decode(job, grammar, stopped, emit)
        except Exception as exc:
            self._forget_context()  # it may hold a half-written batch
            raise BackendError(f"the local model failed: {exc}") from exc
        if stopped():
            return False
        # What is left to emit, and the output item as a client sends it back, as a block: the
        # call made (a constrained answer cut before its name has none), else the free text.
        events: list[ModelEvent] = []
        if grammar is not None:
            call = _tool_call(text + tail, reason)
            if call is not None:
                events = [ToolCallStarted(call[0]), ToolCallDelta(call[1])]
            output = None if call is None else Block("assistant", tool_call_text(*call))
        else:
            events = [TextDelta(tail)] if tail else []
            output = Block("assistant", text + tail) if text + tail else None
        for event in events:
            emit(event)
        # `Llama.generate` evaluated the prompt's last token and every token it fed back alone.
        self._singles = merged((*self._singles, (len(job.prompt) - 1, self._llm.n_tokens)))
        if produced:  # an output item exists: remember the conversation with it
            closing = self._chatml.closing(tool_call=job.tool_call)
            self._remember(job, closing, items=job.items + 1, output=output)
        usage = Usage(input_tokens=len(job.prompt), cached_tokens=cached, output_tokens=produced)
        emit(Finished(reason, usage))
        return True

    def _warm(self, job: Job, stopped: Callable[[], bool]) -> int | None:
        """A warm-up's prefill; the conversation is then resident and remembered."""
        try:
            cached = self._load(job, job.prompt, stopped)
        except Exception as exc:
            self._forget_context()
            raise BackendError(f"the local model failed: {exc}") from exc
        if cached is not None:
            self._remember(job, [], items=job.items, output=None)
        return cached

    def _load(self, job: Job, tokens: list[int], stopped: Callable[[], bool]) -> int | None:
        """Make the context hold `tokens`; returns how many were already there (not prefilled).

        The resident conversation is snapshotted first if `tokens` would displace part of it; the
        snapshot sharing the longest prefix with `tokens` is restored when it shares more than
        the context does. What another scope left is never reused, however much of it matches."""
        llm = self._llm
        self._heads[job.found, job.left] += 1
        same_scope = self._scope == job.cache_scope
        common = common_prefix(llm.input_ids[: llm.n_tokens], tokens) if same_scope else 0
        if self._resident is not None and self._scope is not None and common < llm.n_tokens:
            self._keep(self._resident, capture(llm, self._scope, self._singles))
        self._resident = None
        if not same_scope:
            self._forget_context()
            self._scope = job.cache_scope
        found = self.snapshots.longest(job.cache_scope, tokens) if common < len(tokens) else None
        if found is not None and found[1] > common:
            snapshot = found[0]
            restore(llm, snapshot)
            self._copied += snapshot.size
            self._singles = snapshot.singles
        return self._prefill(tokens, job.singles, stopped)

    def _run_on_free_cores(self) -> None:
        """Set the threads of the next step: as many as other work leaves cores (`threads.py`)."""
        threads = self.threads.next_step()
        if threads != self._applied_threads:
            llama_cpp.llama_set_n_threads(self._llm.ctx, threads, threads)
            self._applied_threads = threads

    def _keep(self, response_id: str, snapshot: KvSnapshot) -> None:
        self.snapshots.put(response_id, snapshot)
        self._copied += snapshot.size

    def _remember(self, job: Job, closing: list[int], items: int, output: Block | None) -> None:
        """Record the conversation the context now holds (`closing` still to be evaluated), its
        output block addressed after the prompt's when there is one."""
        llm = self._llm
        tokens = array("i", llm.input_ids[: llm.n_tokens].tolist() + closing)
        marks = job.marks
        if output is not None and job.addressed:
            marks = (*marks, (following(marks[-1][0], output), len(tokens)))
        record = TokenRecord(tokens, job.system_len, items, self._singles, marks, job.origin)
        self.records.put(job.response_id, record)
        self._resident = job.response_id

    def _forget_context(self) -> None:
        self._llm.n_tokens = 0
        self._resident = None
        self._singles = ()

    def _prefill(
        self, tokens: list[int], singles: tuple[Span, ...], stopped: Callable[[], bool]
    ) -> int | None:
        """Bring the context to exactly `tokens`, keeping the prefix it already holds.

        Positions in `singles` are evaluated one at a time, the way they first were, so that
        recomputed KV matches the original (batches.py). Returns the kept length, or None if
        stopped. `self._singles` ends up describing every position the context holds."""
        llm = self._llm
        cached = common_prefix(llm.input_ids[: llm.n_tokens], tokens)
        forget_from(llm, cached)
        evaluated_alone = list(within(self._singles, cached))
        for start, end in batches(cached, len(tokens), singles, _PREFILL_SLICE):
            if stopped():
                return None
            self._run_on_free_cores()
            llm.eval(tokens[start:end])
            if end - start == 1:
                evaluated_alone.append((start, end))
        self._singles = merged(evaluated_alone)
        return cached

    def _decode(
        self,
        job: Job,
        grammar: LlamaGrammar | None,
        stopped: Callable[[], bool],
        emit: Callable[[_Handoff], None],
    ) -> tuple[int, Literal["stop", "length"], str, str]:
        """Sample until the end of the turn, the budget or a stop.

        Returns tokens produced, why it ended, the text and the tail the decoder still held: text
        streams as it comes unless a grammar is set (the tail is never emitted here)."""
        llm = self._llm
        # Tokens are bytes; a character may span two tokens, so decode incrementally.
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        produced = 0
        reason: Literal["stop", "length"] = "stop"
        tokens = llm.generate(
            job.prompt,
            temp=job.temperature,
            top_p=job.top_p,
            top_k=0,  # off: the API exposes temperature and top_p only
            min_p=0.0,
            typical_p=1.0,
            repeat_penalty=1.0,
            grammar=grammar,
        )
        self._run_on_free_cores()
        try:
            for token in tokens:
                if stopped() or token in self._end_of_turn:
                    break
                # Sampling one token past the budget tells an answer that ends exactly at the
                # budget ("stop") from one that was cut ("length").
                if produced == job.budget:
                    reason = "length"
                    break
                produced += 1
                text = utf8.decode(llm.detokenize([token]))
                pieces.append(text)
                if grammar is None and text:
                    emit(TextDelta(text))
                self._run_on_free_cores()  # for the step that evaluates this token
        finally:
            tokens.close()
        return produced, reason, "".join(pieces), utf8.decode(b"", final=True)


def _tool_call(output: str, reason: Literal["stop", "length"]) -> tuple[str, str] | None:
    """The name and arguments of a constrained answer's call; None when it was cut before the
    name was complete (there is no call to report)."""
    call = parse_tool_call(output)
    if call is None and reason == "length":
        return parse_partial_tool_call(output)
    if call is None:
        raise BackendError(f"the grammar-constrained tool call is not valid JSON: {output!r}")
    return call


def _open(path: Path, n_ctx: int, n_threads: int) -> Llama:
    try:
        return Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise BackendUnavailable(f"cannot load {path}: {exc}") from exc


def _trained_context(llm: Llama) -> int | None:
    metadata = llm.metadata
    value = metadata.get(f"{metadata.get('general.architecture')}.context_length")
    return int(value) if value is not None else None
