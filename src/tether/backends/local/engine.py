"""`LocalBackend`: SmolLM2 (or any GGUF) run in-process by llama-cpp-python, its prompts in the
model's own chat template (`template.py`; ChatML for a file without one).

`Llama` keeps the weights and the vocabulary; the KV lives in a context of several sequences
(`sequences.py`), so that several conversations stay resident and run together: the model thread
(`scheduler.py`) advances every generation and warm-up a step at a time, each step one batch.
Tokenising (for prompts and `count_tokens`) runs on a second thread, so that a long generation
does not delay another request's context check. The event loop only moves events (`handoff.py`).

Incremental turns (`memory.py`): every finished conversation leaves its exact token ids, and a
prompt starts with those of the conversation it continues, found by the parent's id or by its
content (`jobs.py`), then renders the new items only. A sequence keeps whatever prefix of a new
prompt it already holds and prefills the rest; a conversation that has to leave the context is
snapshotted, and a prompt restores the snapshot sharing its longest token prefix when that beats
what the context holds. `cached_tokens` is exactly what was not prefilled.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from llama_cpp import Llama

from tether.backends.base import (
    BackendUnavailable,
    CacheStats,
    Cancellation,
    EngineReach,
    Finished,
    Generation,
    ModelEvent,
    Prompt,
)
from tether.backends.local.chatml import forced_tools
from tether.backends.local.grammar import tool_call_grammar
from tether.backends.local.handoff import Handoff
from tether.backends.local.jobs import Job, build, build_whole
from tether.backends.local.layout import fastest
from tether.backends.local.memory import KvSnapshots, TokenRecords
from tether.backends.local.model_file import locate
from tether.backends.local.scheduler import Scheduler, Task
from tether.backends.local.sequences import KvContext
from tether.backends.local.template import Templated, TemplateError, prompt_format
from tether.backends.local.threads import ThreadCount
from tether.config import LocalEngine
from tether.protocol.resources import ModelDetails
from tether.protocol.response import Usage

# The context `Llama` makes for itself, unused: llama.cpp's smallest.
_UNUSED_CONTEXT = 256

log = logging.getLogger(__name__)


class LocalBackend:
    """Build with `LocalBackend.load(...)`; close with `await backend.aclose()`."""

    def __init__(self, llm: Llama, model_id: str, engine: LocalEngine, n_ctx: int) -> None:
        self._llm = llm
        self._model_id = model_id
        self._format = prompt_format(llm, engine.chat_template)
        self.records = TokenRecords(engine.token_record_bytes)
        self.snapshots = KvSnapshots(engine.kv_cache_bytes)
        self.threads = ThreadCount(engine.n_threads, engine.tune_threads)
        self._context = KvContext(llm, engine.n_sequences, n_ctx, engine.n_threads)
        self._scheduler = Scheduler(
            llm, self._context, self._format, self.records, self.snapshots, self.threads
        )
        self._tokenizer_thread = ThreadPoolExecutor(1, thread_name_prefix="tether-tokenize")
        self._closing = threading.Event()
        self._scheduler.start()

    @classmethod
    def load(cls, engine: LocalEngine, model_path: str | Path | None = None) -> LocalBackend:
        """Load the default SmolLM2 file, or the `.gguf` at `model_path` (~0.2 s, mmap), with a
        context of `n_sequences` times `n_ctx` tokens (`n_ctx` capped at the model's trained one)."""
        model = locate(model_path)
        layout = fastest(model.path, engine.n_threads) if engine.fastest_weights else None
        path = model.path if layout is None else layout.path
        log.info(
            "weights: %s",
            "as shipped (--no-fastest-weights)" if layout is None else f"{layout.name}: {layout.reason}",
        )
        llm = _open(path)
        trained = _trained_context(llm)
        n_ctx = engine.n_ctx if trained is None else min(engine.n_ctx, trained)
        try:
            return cls(llm, model.model_id, engine, n_ctx)
        except (RuntimeError, OSError, ValueError, TemplateError) as exc:  # the context, or the template
            llm.close()
            raise BackendUnavailable(f"cannot load {path}: {exc}") from exc

    @property
    def model_ids(self) -> tuple[str, ...]:
        return (self._model_id,)

    def model_details(self, model_id: str) -> ModelDetails:
        rendering = self._format
        return ModelDetails(
            self.n_ctx, prompt_format=rendering.family, tool_format=rendering.tool_format.name
        )

    @property
    def n_ctx(self) -> int:
        """Tokens a conversation may hold: prompt and answer together."""
        return self._context.n_ctx

    @property
    def context_tokens(self) -> int:
        """Tokens the sequence last given work holds: how far its prefill and generation went."""
        latest = self._scheduler.latest
        return 0 if latest is None else len(latest.tokens)

    async def render(self, generation: Generation) -> Prompt:
        """The job's tokens, built on the tokenizer thread (a turn's prompt opens the model's
        reply; a warm-up's does not)."""
        job = await self._build(generation)
        return Prompt(generation, len(job.prompt), job)

    async def _build(self, generation: Generation) -> Job:
        if self._closing.is_set():
            raise BackendUnavailable("the local model is shutting down")
        try:
            future = self._tokenizer_thread.submit(self._job, generation)
        except RuntimeError as exc:  # shut down between the check and the submit
            raise BackendUnavailable("the local model is shutting down") from exc
        return await asyncio.wrap_future(future)

    async def _job_of(self, prompt: Prompt) -> Job:
        """The prompt's job, built again only when its parent's token record appeared since (a
        warm-up's prefill that was still running): then it starts from those very tokens."""
        job = prompt.rendered
        assert isinstance(job, Job), "a prompt rendered by another backend"
        if not job.parent_recorded and self.records.get(job.parent_id) is not None:
            return await self._build(prompt.generation)
        return job

    def cache_stats(self) -> CacheStats:
        snapshots, scheduler = self.snapshots, self._scheduler
        return CacheStats(
            snapshot_bytes=snapshots.bytes,
            snapshot_budget_bytes=snapshots.budget_bytes,
            snapshots=len(snapshots),
            evictions=snapshots.evictions,
            early_evictions=snapshots.early_evictions,
            prompt_heads=tuple((found, left, count) for (found, left), count in scheduler.heads.items()),
            snapshot_bytes_copied=scheduler.copied,
            sequences_resident=sum(bool(sequence.tokens) for sequence in self._context.sequences),
            threads=self.threads.now,
        )

    async def check(self) -> None:
        if self._closing.is_set():
            raise BackendUnavailable("the local model is shutting down")

    async def reach(self) -> tuple[EngineReach, ...]:
        problem = "shutting down" if self._closing.is_set() else None
        return (EngineReach(f"llama.cpp in this process ({self.model_ids[0]})", problem),)

    def hold(self, response_id: str) -> None:
        self.snapshots.hold(response_id)

    def release(self, response_id: str) -> None:
        self.snapshots.release(response_id)

    async def generate(self, prompt: Prompt, cancel: Cancellation) -> AsyncGenerator[ModelEvent, None]:
        job = await self._job_of(prompt)
        forced = forced_tools(prompt.generation)
        grammar = tool_call_grammar(forced, job.tool_format) if forced else None
        async for event in self._run(Task(job, self._handoff(), cancel, answer=True, grammar=grammar)):
            if cancel.is_set:
                return
            yield event

    async def prepare(self, prompt: Prompt, cancel: Cancellation) -> Usage:
        """Warm-up (`generate: false`): prefill the conversation so the next turn starts warm."""
        job = await self._job_of(prompt)
        async for event in self._run(Task(job, self._handoff(), cancel, answer=False)):
            if isinstance(event, Finished):
                return event.usage
        return Usage(input_tokens=len(job.prompt), cached_tokens=0, output_tokens=0)  # cancelled

    def _handoff(self) -> Handoff:
        return Handoff(asyncio.get_running_loop(), self._scheduler.wake)

    async def _run(self, task: Task) -> AsyncGenerator[ModelEvent, None]:
        self._scheduler.submit(task)  # refused once the model is shutting down
        async for event in task.handoff.events():
            yield event

    async def aclose(self) -> None:
        """Stop running work (its consumers get `BackendUnavailable`) and free the model."""
        if self._closing.is_set():
            return
        self._closing.set()
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        self._scheduler.close()
        self._tokenizer_thread.shutdown(wait=True)
        self._context.close()
        self._llm.close()

    # --- on the tokenizer thread ------------------------------------------------------------------

    def _job(self, generation: Generation) -> Job:
        if isinstance(self._format, Templated):
            return build_whole(generation, self._format, self.n_ctx, opening=generation.generate)
        return build(generation, self._format, self.records, self.n_ctx, opening=generation.generate)


def _open(path: Path) -> Llama:
    """The weights and vocabulary; its own context is the smallest llama.cpp makes, never used
    (the KV lives in `KvContext`)."""
    try:
        return Llama(model_path=str(path), n_ctx=_UNUSED_CONTEXT, n_batch=1, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise BackendUnavailable(f"cannot load {path}: {exc}") from exc


def _trained_context(llm: Llama) -> int | None:
    metadata = llm.metadata
    value = metadata.get(f"{metadata.get('general.architecture')}.context_length")
    return int(value) if value is not None else None
