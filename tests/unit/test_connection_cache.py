"""The connection-local cache (§8.2), driven as core drives it: responses start, end, settle.

No sockets: what the cache answers for a `previous_response_id` is the rule under test. Behind it
stands a history of stored responses (the store's part, §8.2 rule 3.2), and a record of what the
backend is asked to keep warm.
"""

from __future__ import annotations

import asyncio

import pytest

from tether.core.connection_cache import ConnectionCache
from tether.core.lifecycle import Lifecycle, Outcome, State
from tether.protocol import errors
from tether.protocol.errors import ApiError
from tether.protocol.items import Item, Message, TextPart
from tether.protocol.response import Usage

USAGE = Usage(1, 0, 1)


def said(text: str, role: str = "user") -> Message:
    kind = "output_text" if role == "assistant" else "input_text"
    return Message(role=role, content=(TextPart(kind, text),), id=f"msg_{text}")  # type: ignore[arg-type]


class Stored:
    """Stored responses, as the store-backed history answers for them."""

    def __init__(self, **chains: tuple[Item, ...]) -> None:
        self.chains = chains

    async def items_of(self, response_id: str) -> tuple[Item, ...]:
        if response_id not in self.chains:
            raise errors.previous_response_not_found(response_id)
        return self.chains[response_id]

    async def find_item(self, item_id: str) -> Item | None:
        return None


class Warmth:
    def __init__(self) -> None:
        self.held: set[str] = set()

    def hold(self, response_id: str) -> None:
        self.held.add(response_id)

    def release(self, response_id: str) -> None:
        self.held.discard(response_id)


def cache(stored: Stored | None = None, recent: int = 8) -> ConnectionCache:
    return ConnectionCache(stored or Stored(), Warmth(), recent)


def finish(
    c: ConnectionCache, response_id: str, status: State, lane: str | None = None, parent: str | None = None
) -> None:
    """A response that ran on `lane` from `parent` ended with `status` and settled."""
    context = (said(f"in-{response_id}"),)
    output = (said(f"out-{response_id}", "assistant"),) if status is not State.FAILED else ()
    c.record(lane, parent, response_id, context, Outcome(status, output, USAGE))


def items(c: ConnectionCache, response_id: str) -> tuple[Item, ...]:
    return asyncio.run(c.items_of(response_id))


def not_found(c: ConnectionCache, response_id: str) -> bool:
    try:
        items(c, response_id)
    except ApiError as error:
        return error.code == "previous_response_not_found"
    return False


@pytest.mark.parametrize("status", [State.COMPLETED, State.INCOMPLETE])
def test_a_chainable_response_becomes_its_lanes_latest_with_its_whole_context(status: State) -> None:
    """Rule 1: completed or incomplete (warm-ups too); the cached context is inputs then outputs."""
    c = cache()
    finish(c, "r1", status, lane="a")
    assert c.is_latest("a", "r1")
    assert items(c, "r1") == (said("in-r1"), said("out-r1", "assistant"))
    assert c.warmth.held == {"r1"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [State.FAILED, State.CANCELLED])
def test_a_failed_or_cancelled_response_is_never_cached(status: State) -> None:
    c = cache()
    finish(c, "r1", status)
    assert not c.is_latest(None, "r1") and not_found(c, "r1")


def test_a_newer_success_replaces_the_lanes_latest_and_releases_the_older() -> None:
    c = cache()
    finish(c, "r1", State.COMPLETED)
    finish(c, "r2", State.COMPLETED, parent="r1")
    assert c.is_latest(None, "r2")
    assert c.warmth.held == {"r2"}  # type: ignore[attr-defined]
    assert items(c, "r1")  # still among the recent ones


def test_a_failed_same_lane_continuation_evicts_its_parent() -> None:
    """Rule 4: after it, a retry from the same parent gets `previous_response_not_found`."""
    c = cache()
    finish(c, "r1", State.COMPLETED)
    finish(c, "r2", State.FAILED, parent="r1")
    assert not c.is_latest(None, "r1") and not_found(c, "r1")
    assert c.warmth.held == set()  # type: ignore[attr-defined]


def test_a_refused_same_lane_continuation_evicts_its_parent() -> None:
    """Rule 4 (and D10): a phase-2 `error` event counts as a failure."""
    c = cache()
    finish(c, "r1", State.COMPLETED, lane="a")
    c.refused("a", "r1")
    assert not_found(c, "r1")


def test_after_eviction_a_stored_parent_is_hydrated_from_the_store() -> None:
    """Rule 4: eviction affects only the cache."""
    stored_chain = (said("stored"),)
    c = cache(Stored(r1=stored_chain))
    finish(c, "r1", State.COMPLETED)
    c.refused(None, "r1")
    assert items(c, "r1") == stored_chain


def test_a_failed_fork_from_another_lane_keeps_that_lanes_latest() -> None:
    """Rule 5."""
    c = cache()
    finish(c, "r1", State.COMPLETED, lane="source")
    finish(c, "r2", State.FAILED, lane="fork", parent="r1")
    c.refused("fork", "r1")
    assert c.is_latest("source", "r1") and items(c, "r1")


def test_an_incomplete_continuation_or_a_failure_without_parent_evicts_nothing() -> None:
    """Rule 6."""
    c = cache()
    finish(c, "r1", State.COMPLETED)
    finish(c, "r2", State.FAILED)
    c.refused(None, None)
    assert c.is_latest(None, "r1")
    finish(c, "r3", State.INCOMPLETE, parent="r1")
    assert c.is_latest(None, "r3") and items(c, "r1")


def test_a_parent_still_running_cannot_be_continued() -> None:
    """Rule 7: not before its terminal event."""
    c = cache()
    c.started("r1", lifecycle := Lifecycle())
    lifecycle.start()
    with pytest.raises(ApiError, match="has not finished yet"):
        items(c, "r1")


def test_a_parent_that_has_just_ended_is_waited_for_until_recorded() -> None:
    """Rule 7: a client may chain from a response the moment its terminal event arrives."""

    async def scenario() -> None:
        c = cache()
        lifecycle = Lifecycle()
        c.started("r1", lifecycle)
        lifecycle.start()
        result = Outcome(State.COMPLETED, (said("out-r1", "assistant"),), USAGE)
        lifecycle.end(result)  # terminal event out; not recorded yet
        lookup = asyncio.ensure_future(c.items_of("r1"))
        await asyncio.sleep(0)
        assert not lookup.done()
        c.record(None, None, "r1", (said("in-r1"),), result)
        lifecycle.settle()
        assert await lookup == (said("in-r1"), said("out-r1", "assistant"))

    asyncio.run(scenario())


def test_unknown_ids_fall_through_to_the_store_then_are_not_found() -> None:
    """Rule 3 and rule 9: another connection's `store: false` response is simply unknown here."""
    c = cache(Stored(stored=(said("s"),)))
    assert items(c, "stored") == (said("s"),)
    assert not_found(c, "elsewhere")


def test_the_connection_keeps_a_bounded_number_of_recent_responses() -> None:
    c = cache(recent=2)
    for n in range(4):
        finish(c, f"r{n}", State.COMPLETED, lane=f"lane-{n % 2}" if n < 2 else None)
    assert items(c, "r0") and items(c, "r1")  # each still its lane's latest
    finish(c, "r4", State.COMPLETED)
    assert not_found(c, "r2")  # neither a latest nor among the 2 most recent


def test_closing_the_connection_forgets_everything() -> None:
    """Rule 8."""
    c = cache()
    finish(c, "r1", State.COMPLETED, lane="a")
    c.clear()
    assert not_found(c, "r1") and c.warmth.held == set()  # type: ignore[attr-defined]
