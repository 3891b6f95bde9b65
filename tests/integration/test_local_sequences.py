"""Several conversations resident and running at once in the local engine's context: switching
between them copies nothing, their steps share batches without changing a greedy answer, and a
long prompt is prefilled in slices between the other answers' tokens."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from tests.integration.test_local_backend import assistant, collect, finished, generation, user
from tether.backends.base import Cancellation, Finished, ModelEvent, TextDelta
from tether.backends.local import LocalBackend
from tether.config import LocalEngine
from tether.protocol.items import Item

pytestmark = pytest.mark.local_model

# Greedy SmolLM2 loops on this prompt, so it answers up to whatever budget it is given.
ENDLESS = "What is the capital of France?"
LONG_PROMPT = "Summarise these notes. " + " ".join(
    f"Note {n}: the build passed on day {n}." for n in range(120)
)
RESPONSE_IDS = itertools.count(1)


@pytest.fixture(scope="module")
def two_sequences() -> Iterator[LocalBackend]:
    loaded = LocalBackend.load(LocalEngine(fastest_weights=False, n_sequences=2, n_ctx=2048))
    yield loaded
    asyncio.run(loaded.aclose())


def text(events: list[ModelEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


class Conversation:
    """A client resending its whole history each turn (no parent id): reuse is by content."""

    def __init__(self, backend: LocalBackend, scope: str, opening: str) -> None:
        self.backend, self.scope = backend, scope
        self.items: tuple[Item, ...] = (user(opening),)

    def turn(self, ask: str | None = None) -> Finished:
        if ask is not None:
            self.items = (*self.items, user(ask))
        response_id = f"resp_{next(RESPONSE_IDS)}"  # snapshots are kept by response id
        gen = generation(self.items, response_id=response_id, max_output_tokens=12, cache_scope=self.scope)
        events = collect(self.backend, gen)
        self.items = (*self.items, assistant(text(events)))
        return finished(events)


def test_switching_between_resident_conversations_copies_nothing(two_sequences: LocalBackend) -> None:
    backend = two_sequences
    ada = Conversation(backend, "switching", "My name is Ada. Tell me about boats.")
    bob = Conversation(backend, "switching", "My name is Bob. Tell me about trains.")
    before = backend.cache_stats().snapshot_bytes_copied
    last = {ada: ada.turn(), bob: bob.turn()}
    for n in range(2):
        for conversation in (ada, bob):
            held = last[conversation].usage.input_tokens + last[conversation].usage.output_tokens
            last[conversation] = conversation.turn(f"Question {n}?")
            assert last[conversation].usage.cached_tokens >= held - 1  # all it had, in its own sequence
    stats = backend.cache_stats()
    assert stats.snapshot_bytes_copied == before
    assert stats.sequences_resident == 2


def test_more_conversations_than_sequences_take_turns_through_snapshots(two_sequences: LocalBackend) -> None:
    backend = two_sequences
    conversations = [
        Conversation(backend, "crowded", f"Conversation {n}: tell me about the number {n}.") for n in range(3)
    ]
    firsts = [conversation.turn() for conversation in conversations]  # the third displaces the first
    before = backend.cache_stats().snapshot_bytes_copied
    again = conversations[0].turn("And the next number?")
    assert again.usage.cached_tokens >= firsts[0].usage.input_tokens - 1  # restored, not re-prefilled
    assert backend.cache_stats().snapshot_bytes_copied > before


def test_answers_run_together_and_match_their_solo_runs(two_sequences: LocalBackend) -> None:
    backend = two_sequences
    asks = ("Name three rivers in Europe.", "Write a haiku about rain.")

    solo = [
        collect(backend, generation((user(ask),), max_output_tokens=40, cache_scope="solo")) for ask in asks
    ]

    async def together() -> list[tuple[int, ModelEvent]]:
        arrivals: list[tuple[int, ModelEvent]] = []

        async def one(index: int, ask: str) -> None:
            prompt = await backend.render(
                generation((user(ask),), max_output_tokens=40, cache_scope="together")
            )
            async for event in backend.generate(prompt, Cancellation()):
                arrivals.append((index, event))

        await asyncio.gather(*(one(index, ask) for index, ask in enumerate(asks)))
        return arrivals

    arrivals = asyncio.run(together())
    runs = [[event for index, event in arrivals if index == n] for n in range(2)]
    assert [text(run) for run in runs] == [text(run) for run in solo]  # batching changes no token
    first_done = next(n for n, (_, event) in enumerate(arrivals) if isinstance(event, Finished))
    streamed = [index for index, event in arrivals[:first_done] if isinstance(event, TextDelta)]
    assert min(streamed.count(0), streamed.count(1)) >= 5  # both streamed before either ended


def test_a_long_prompt_is_prefilled_between_another_answer_s_tokens(two_sequences: LocalBackend) -> None:
    backend = two_sequences

    async def run() -> tuple[int, int, int]:
        """Deltas of the endless answer before the long prompt was sent, while it was prefilled
        (until its first token), and in all."""
        streaming = await backend.render(
            generation((user(ENDLESS),), max_output_tokens=300, cache_scope="stall")
        )
        long = await backend.render(
            generation((user(LONG_PROMPT),), max_output_tokens=4, cache_scope="stall")
        )
        assert long.input_tokens > 1000
        deltas = 0
        during: int | None = None
        long_started = asyncio.Event()

        async def the_long_one() -> None:
            nonlocal during
            async for _ in backend.generate(long, Cancellation()):
                if during is None:
                    during = deltas
                    long_started.set()

        task: asyncio.Task[None] | None = None
        sent_at = 0
        async for event in backend.generate(streaming, Cancellation()):
            if isinstance(event, TextDelta):
                deltas += 1
            if deltas == 3 and task is None:
                task, sent_at = asyncio.create_task(the_long_one()), deltas
        assert task is not None
        await task
        assert during is not None
        return sent_at, during - sent_at, deltas

    sent_at, while_prefilling, total = asyncio.run(run())
    # ~1,100 tokens are 18 slices: the answer kept streaming meanwhile, and the long prompt's
    # first token came long before the answer's budget ran out.
    assert while_prefilling >= 8
    assert sent_at + while_prefilling < total - 50


def test_prompts_sent_together_start_answering_one_after_another(two_sequences: LocalBackend) -> None:
    """Two long prompts at once: the one placed first is prefilled first and streams while the
    other is prefilled, rather than both getting their first token at the end."""
    backend = two_sequences
    notes = [f"{LONG_PROMPT} Which day came {word}?" for word in ("first", "last")]

    async def run() -> list[int]:
        prompts = [
            await backend.render(generation((user(text),), max_output_tokens=40, cache_scope="together-long"))
            for text in notes
        ]
        arrivals: list[int] = []

        async def one(index: int) -> None:
            async for event in backend.generate(prompts[index], Cancellation()):
                if isinstance(event, TextDelta):
                    arrivals.append(index)

        await asyncio.gather(one(0), one(1))
        return arrivals

    arrivals = asyncio.run(run())
    # ~18 slices of the second prompt, each step with a token of the first (if it goes on so long)
    assert arrivals.index(1) >= min(10, arrivals.count(0))


def test_an_answer_waits_for_a_free_sequence_and_can_be_cancelled_while_it_waits(
    two_sequences: LocalBackend,
) -> None:
    """Four answers on two sequences: the third starts when one of the first two ends; the
    fourth, cancelled while it waits, never starts."""
    backend = two_sequences

    async def run() -> tuple[list[tuple[int, ModelEvent]], list[ModelEvent]]:
        budgets = (30, 30, 10, 10)
        prompts = [
            await backend.render(
                generation((user(f"{ENDLESS} ({n})"),), max_output_tokens=budget, cache_scope="waiting")
            )
            for n, budget in enumerate(budgets)
        ]
        arrivals: list[tuple[int, ModelEvent]] = []
        waiting = Cancellation()
        of_the_cancelled: list[ModelEvent] = []

        async def answer(n: int) -> None:
            cancel = waiting if n == 3 else Cancellation()
            async for event in backend.generate(prompts[n], cancel):
                if n == 3:
                    of_the_cancelled.append(event)
                    continue
                arrivals.append((n, event))
                if isinstance(event, TextDelta):
                    waiting.cancel("the client went away")  # the first two run, the last two wait

        # Tasks run to their first wait in the order they were made: that is the order they queue.
        await asyncio.gather(*(asyncio.create_task(answer(n)) for n in range(4)))
        return arrivals, of_the_cancelled

    arrivals, of_the_cancelled = asyncio.run(run())
    first_end = next(i for i, (_, event) in enumerate(arrivals) if isinstance(event, Finished))
    third_starts = next(i for i, (n, _) in enumerate(arrivals) if n == 2)
    assert third_starts > first_end  # it waited for a sequence
    assert sum(isinstance(event, Finished) for _, event in arrivals) == 3
    assert of_the_cancelled == []
