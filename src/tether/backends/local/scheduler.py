"""The model thread: every generation and warm-up in flight, advanced together a step at a time.

A task waits in arrival order for an idle sequence of the context (`sequences.py`) and is placed
where its prompt costs least (`_place`): on the sequence already holding a prefix of it when that
sequence has nothing else to lose, else on an empty or the least recently used one, brought to
the longest prefix the context (a copy between sequences) or a snapshot holds. A resident
conversation about to lose tokens is snapshotted first.

Each step is one `llama_decode` with every answer's next token and one prefill slice: a long
prompt never stalls the other answers' streams. The slice is from the prompt with the least left
to prefill (the earliest placed on a tie): when several agents send their turns at once, the
first tokens come one prompt after another instead of all at the end, as taking slices in turn
would make them. A long prompt waits for at most the short ones already placed, as there are only
so many sequences. `cached_tokens` is exactly what a task did not prefill.
"""

from __future__ import annotations

import codecs
import itertools
import threading
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field

import llama_cpp
from llama_cpp import Llama

from tether.backends.base import (
    BackendError,
    BackendUnavailable,
    Cancellation,
    Finished,
    FinishReason,
)
from tether.backends.local.answers import AnswerScanner
from tether.backends.local.batches import Span, batches
from tether.backends.local.chatml import Block, ChatML, tool_call_text
from tether.backends.local.handoff import Handoff
from tether.backends.local.jobs import Found, Job, Left
from tether.backends.local.memory import KvSnapshots, TokenRecord, TokenRecords
from tether.backends.local.pieces import token_bytes
from tether.backends.local.prefix import common_prefix, following
from tether.backends.local.sampling import Sampler
from tether.backends.local.sequences import KvContext, Sequence, Step
from tether.backends.local.template import Templated
from tether.backends.local.threads import ThreadCount
from tether.backends.local.tool_calls import CallScanner
from tether.protocol.response import Usage

# Prefill in slices this long: a cancellation stops a long prompt within a fraction of a second,
# and the answers sharing its steps get a token per slice. Measured: slices of 64 prefill as fast
# as the default batch of 512.
PREFILL_SLICE = 64

_POLL_S = 0.1  # how often a loop with nothing to run checks for cancellations and room


@dataclass(eq=False)
class Task:
    """A generation (`answer`) or a warm-up (prefill only), as handed to the model thread."""

    job: Job
    handoff: Handoff
    cancel: Cancellation
    answer: bool
    grammar: str | None = None  # GBNF of a forced tool call

    def stopped(self) -> bool:
        """The request was cancelled, or its consumer left."""
        return self.cancel.is_set or self.handoff.abandoned.is_set()


@dataclass(eq=False)
class _Running:
    task: Task
    sequence: Sequence
    cached: int
    plan: deque[Span]  # prompt ranges still to prefill; an answer's last keeps its logits
    sampler: Sampler | None
    utf8: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )  # tokens are bytes: a character may span two
    pieces: list[str] = field(default_factory=list)
    # A free answer's thinking, text and calls; a forced call's call.
    scanner: AnswerScanner | CallScanner | None = None
    produced: int = 0
    next_token: int | None = None  # sampled and counted, evaluated at the next step


class Scheduler:
    """Start with `start()`, stop with `close()` (running and waiting tasks then fail)."""

    def __init__(
        self,
        llm: Llama,
        context: KvContext,
        turns: ChatML | Templated,
        records: TokenRecords,
        snapshots: KvSnapshots,
        threads: ThreadCount,
    ) -> None:
        self._context = context
        self._turns = turns  # how a turn ends, in the model's prompt format
        self._records = records
        self._snapshots = snapshots
        self._threads = threads
        self._end_of_turn = frozenset({turns.end_of_turn, llm.token_eos()})
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._waiting: deque[Task] = deque()
        self._running: list[_Running] = []
        self._changed = threading.Condition()  # guards `_waiting` and `_closing`
        self._closing = False
        self._clock = itertools.count(1)  # orders the sequences' use
        self.heads: Counter[tuple[Found, Left]] = Counter()  # prompts by how their head was found
        self.copied = 0  # bytes of KV copied out to snapshots and back in
        self.latest: Sequence | None = None  # the sequence last given work
        self._thread = threading.Thread(target=self._loop, name="tether-llama")

    def start(self) -> None:
        self._thread.start()

    def submit(self, task: Task) -> None:
        with self._changed:
            if self._closing:
                raise BackendUnavailable("the local model is shutting down")
            self._waiting.append(task)
            self._changed.notify()

    def wake(self) -> None:
        with self._changed:
            self._changed.notify()

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join()

    # --- on the model thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._changed:
                if self._closing:
                    break
            for running in [r for r in self._running if r.task.stopped()]:
                self._release(running)
            self._admit()
            planned = self._plan()
            if planned:
                self._step(planned)
                continue
            with self._changed:
                if not self._closing and not self._waiting_to_start():
                    self._changed.wait(_POLL_S if self._running or self._waiting else None)
        gone = BackendUnavailable("the local model was shut down")
        for running in list(self._running):
            self._release(running, gone)
        for task in self._waiting:
            task.handoff.fail(gone)

    def _waiting_to_start(self) -> bool:
        """A waiting task could be placed now (called with `_changed` held)."""
        return bool(self._waiting) and any(not s.busy for s in self._context.sequences)

    def _admit(self) -> None:
        while True:
            with self._changed:
                idle = [s for s in self._context.sequences if not s.busy]
                if not self._waiting or not idle:
                    return
                task = self._waiting.popleft()
            if task.stopped():
                task.handoff.end()
                continue
            try:
                running = self._place(task, idle)
            except Exception as exc:
                task.handoff.fail(BackendError(f"the local model failed: {exc}"))
                continue
            self._running.append(running)
            if not running.plan:  # a warm-up whose tokens were all there
                self._warmed(running)

    def _place(self, task: Task, idle: list[Sequence]) -> _Running:
        """Put the task on the idle sequence where its prompt costs least (see the module)."""
        job, context = task.job, self._context
        # An answer's last prompt token is evaluated with its logits kept, so it is never reused.
        target = job.prompt[:-1] if task.answer else job.prompt
        self.heads[job.found, job.left] += 1

        def shared(sequence: Sequence) -> int:
            same = sequence.scope == job.cache_scope  # another tenant's tokens are never reused
            return common_prefix(sequence.tokens, target) if same and sequence.tokens else 0

        shares = {sequence: shared(sequence) for sequence in idle}
        best = max(idle, key=lambda s: (shares[s], shares[s] == len(s.tokens), s.used))
        reach = shares[best]
        if reach and reach == len(best.tokens):
            sequence = best  # it holds a prefix of the prompt and nothing more
        else:
            sequence = min(idle, key=lambda s: (bool(s.tokens), s.used))  # empty, else the oldest
        if sequence.resident is not None and shares[sequence] < len(sequence.tokens):
            snapshot = context.capture(sequence)
            self._snapshots.put(sequence.resident, snapshot, sequence.resident_ttl_s)
            self.copied += snapshot.size
        sequence.resident = None
        if sequence.scope != job.cache_scope:
            context.forget_from(sequence, 0)
            sequence.scope = job.cache_scope
        found = self._snapshots.longest(job.cache_scope, target) if reach < len(target) else None
        if found is not None and found[1] > reach:
            context.restore(sequence, found[0])
            self.copied += found[0].size
        elif sequence is not best and reach > shares[sequence]:
            context.copy(best, sequence, reach)
        cached = context.servable(sequence, common_prefix(sequence.tokens, target))
        context.forget_from(sequence, cached)
        sequence.busy, sequence.used = True, next(self._clock)
        self.latest = sequence
        plan = deque(batches(cached, len(target), job.singles, PREFILL_SLICE))
        sampler = None
        if task.answer:
            plan.append((len(target), len(job.prompt)))
            sampler = Sampler(self._vocab, job.temperature, job.top_p, task.grammar)
        scanner: AnswerScanner | CallScanner | None = None
        if task.answer and task.grammar is not None:
            scanner = CallScanner(job.tool_format, forced=True)
        elif task.answer:
            scanner = AnswerScanner(job.thinking, job.tool_format if job.free_calls else None, job.one_call)
        return _Running(task, sequence, cached, plan, sampler, scanner=scanner)

    def _plan(self) -> list[tuple[_Running, Step]]:
        """Every answer's next token whose consumer has room, and one prefill slice (see the
        module)."""
        planned = [
            (running, Step(running.sequence, [running.next_token], logits=True))
            for running in self._running
            if running.next_token is not None and running.task.handoff.room()
        ]
        prefilling = [running for running in self._running if running.plan]
        if prefilling:
            running = min(
                prefilling, key=lambda r: (sum(end - start for start, end in r.plan), r.sequence.used)
            )
            start, end = running.plan.popleft()
            last = not running.plan and running.task.answer
            planned.append((running, Step(running.sequence, running.task.job.prompt[start:end], last)))
        return planned

    def _step(self, planned: list[tuple[_Running, Step]]) -> None:
        self._run_on_free_cores()
        try:
            rows = self._context.decode([step for _, step in planned])
        except Exception as exc:
            for running, _ in planned:  # their sequences may hold a half-written batch
                self._context.forget_from(running.sequence, 0)
                self._release(running, BackendError(f"the local model failed: {exc}"))
            return
        for (running, _), row in zip(planned, rows, strict=True):
            try:
                if running.sampler is not None and row >= 0:
                    running.next_token = None
                    self._sampled(running, running.sampler.next(self._context.ctx, row))
                elif not running.plan and not running.task.answer:
                    self._warmed(running)
            except Exception as exc:
                self._release(running, BackendError(f"the local model failed: {exc}"))

    def _run_on_free_cores(self) -> None:
        """Set the threads of the next step: as many as other work leaves cores (`threads.py`)."""
        running_on = self._threads.now  # what the context was last set to (or made with)
        if (threads := self._threads.next_step()) != running_on:
            self._context.set_threads(threads)

    def _sampled(self, running: _Running, token: int) -> None:
        job = running.task.job
        if running.task.stopped():
            self._release(running)
        elif token in self._end_of_turn or llama_cpp.llama_vocab_is_eog(self._vocab, token):
            # The template's end of a turn, or any token the model ends with (a grammar that is
            # complete leaves it only those: SmolLM2 may then pick <|endoftext|>).
            self._answered(running, "stop")
        # Sampling one token past the budget tells an answer that ends exactly at the budget
        # ("stop") from one that was cut ("length").
        elif running.produced == job.budget:
            self._answered(running, "length")
        elif running.task.cancel.wrapping_up and running.task.grammar is None and not _in_call(running):
            # A steer: stop before this token, keeping the KV of the answer so far, which the
            # successor then continues. A call is finished first (`Cancellation`).
            self._answered(running, "steered")
        elif job.one_call and running.scanner is not None and running.scanner.closed:
            self._answered(running, "stop")  # the one call it may make is made
        else:
            running.produced += 1
            # The tool format's markup is kept even where it is a special token (Mistral's).
            special = token in self._turns.markup_tokens
            text = running.utf8.decode(token_bytes(self._vocab, token, special))
            running.pieces.append(text)
            assert running.scanner is not None  # every answer has one
            for event in running.scanner.feed(text):
                running.task.handoff.send(event)
            running.next_token = token

    def _answered(self, running: _Running, reason: FinishReason) -> None:
        """Emit what is left and `Finished`, and remember the conversation with its output."""
        task, job = running.task, running.task.job
        text, tail = "".join(running.pieces), running.utf8.decode(b"", final=True)
        # What is left to emit, and the output item as a client sends it back, as a block: the
        # call made (a constrained answer cut before its name has none), else the free text.
        assert running.scanner is not None  # every answer has one
        for event in [*running.scanner.feed(tail), *running.scanner.finish()]:
            task.handoff.send(event)
        if isinstance(running.scanner, CallScanner):  # a forced call (one cut before its name: none)
            made = running.scanner.made
            output = Block("assistant", tool_call_text(*made[0])) if made else None
        else:
            output = Block("assistant", text + tail) if text + tail else None
        # Remembered when an output item exists (or when explicit caching says what to keep),
        # unless the model wrote calls in a free answer: its items (a message, the calls) render
        # otherwise than it wrote them, so its tokens are no record of them; the next turn
        # renders them and reuses the KV up to where the two part.
        made_calls = not isinstance(running.scanner, CallScanner) and running.scanner.calls > 0
        if (running.produced or job.kept is not None) and not made_calls:
            closing = self._turns.closing(tool_call=job.tool_call)
            self._remember(running, closing, items=job.items + 1, output=output)
        usage = Usage(len(job.prompt), running.cached, running.produced, job.written(running.cached))
        task.handoff.send(Finished(reason, usage))
        self._release(running)

    def _warmed(self, running: _Running) -> None:
        job = running.task.job
        self._remember(running, [], items=job.items, output=None)
        usage = Usage(len(job.prompt), running.cached, 0, job.written(running.cached))
        running.task.handoff.send(Finished("stop", usage))
        self._release(running)

    def _remember(self, running: _Running, closing: list[int], items: int, output: Block | None) -> None:
        """Record the conversation the sequence now holds (`closing` still to be evaluated), its
        output block addressed after the prompt's when there is one. Explicit caching keeps
        only the prefix its request marked: the sequence forgets the rest, and so does the
        record; nothing at all without a mark."""
        job, sequence = running.task.job, running.sequence
        if job.kept is not None:
            kept, items = job.kept
            self._context.forget_from(sequence, min(kept, len(sequence.tokens)))
            if not kept:
                sequence.resident = None
                return
            closing, output = [], None
        tokens = array("i", sequence.tokens + closing)
        marks = tuple(mark for mark in job.marks if mark[1] <= len(tokens))
        if output is not None and job.addressed:
            marks = (*marks, (following(marks[-1][0], output), len(tokens)))
        record = TokenRecord(tokens, job.system_len, items, sequence.singles, marks, job.origin)
        self._records.put(job.response_id, record)
        sequence.resident, sequence.resident_ttl_s = job.response_id, job.cache_ttl_s

    def _release(self, running: _Running, error: BaseException | None = None) -> None:
        """The task is done (or failed with `error`): its sequence is free again."""
        self._running.remove(running)
        running.sequence.busy = False
        if running.sampler is not None:
            running.sampler.close()
        if error is None:
            running.task.handoff.end()
        else:
            running.task.handoff.fail(error)


def _in_call(running: _Running) -> bool:
    return running.scanner is not None and running.scanner.in_call
