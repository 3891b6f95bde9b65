"""The response lifecycle table (§5.1, §6.2): every legal move, and the refusal of every other."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tether.core.lifecycle import (
    CHAINABLE,
    TERMINAL,
    TRANSITIONS,
    IllegalMove,
    Lifecycle,
    Outcome,
    State,
    is_chainable,
    mermaid,
)
from tether.protocol.response import Usage

USAGE = Usage(3, 0, 2)


def outcome(status: State) -> Outcome:
    return Outcome(status, (), USAGE)


def at(state: State) -> Lifecycle:
    """A lifecycle brought to `state` by legal moves."""
    lifecycle = Lifecycle()
    if state is State.CREATED:
        return lifecycle
    lifecycle.start()
    if state is State.IN_PROGRESS:
        return lifecycle
    lifecycle.end(outcome(State.COMPLETED if state is State.SETTLED else state))
    if state is State.SETTLED:
        lifecycle.settle()
    return lifecycle


def move(lifecycle: Lifecycle, to: State) -> None:
    if to is State.IN_PROGRESS:
        lifecycle.start()
    elif to is State.SETTLED:
        lifecycle.settle()
    else:
        lifecycle.end(outcome(to))


LEGAL = [(source, target) for source, moves in TRANSITIONS.items() for target in moves]
ILLEGAL = [
    (source, target)
    for source, target in itertools.product(State, State)
    if target not in TRANSITIONS[source] and target is not State.CREATED
]


@pytest.mark.parametrize(("source", "target"), LEGAL)
def test_every_move_in_the_table_is_allowed(source: State, target: State) -> None:
    lifecycle = at(source)
    move(lifecycle, target)
    assert lifecycle.state is target


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_every_other_move_raises_and_leaves_the_state_alone(source: State, target: State) -> None:
    lifecycle = at(source)
    with pytest.raises(IllegalMove, match=f"from {source.value} to {target.value}"):
        move(lifecycle, target)
    assert lifecycle.state is source


def test_a_response_ends_once() -> None:
    """§5.1: exactly one terminal state; a second end is a bug, and the first outcome stays."""
    lifecycle = at(State.IN_PROGRESS)
    lifecycle.end(outcome(State.INCOMPLETE))
    with pytest.raises(IllegalMove):
        lifecycle.end(outcome(State.COMPLETED))
    assert lifecycle.outcome == outcome(State.INCOMPLETE)


def test_an_outcome_must_be_terminal() -> None:
    with pytest.raises(IllegalMove, match="cannot end as settled"):
        at(State.IN_PROGRESS).end(outcome(State.SETTLED))


def test_every_state_but_settled_leads_to_settled() -> None:
    """No response can be stuck: from every state a path of legal moves reaches SETTLED."""
    for state in State:
        reachable, frontier = {state}, [state]
        while frontier:
            for target in TRANSITIONS[frontier.pop()]:
                if target not in reachable:
                    reachable.add(target)
                    frontier.append(target)
        assert State.SETTLED in reachable


def test_settled_wakes_every_waiter_with_the_outcome() -> None:
    async def scenario() -> None:
        lifecycle = at(State.IN_PROGRESS)
        waiters = [asyncio.ensure_future(lifecycle.settled()) for _ in range(3)]
        lifecycle.end(outcome(State.FAILED))
        await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)  # ended is not settled: not stored yet
        lifecycle.settle()
        assert await asyncio.gather(*waiters) == [outcome(State.FAILED)] * 3
        assert await lifecycle.settled() == outcome(State.FAILED)

    asyncio.run(scenario())


def test_only_completed_and_incomplete_can_be_continued() -> None:
    """§8.2 rule 1, §8.3."""
    assert {s for s in TERMINAL if outcome(s).chainable} == CHAINABLE == {State.COMPLETED, State.INCOMPLETE}
    statuses = ("completed", "incomplete", "failed", "cancelled", "in_progress")
    assert [s for s in statuses if is_chainable(s)] == ["completed", "incomplete"]


def test_the_diagram_has_one_arrow_per_move() -> None:
    diagram = mermaid(TRANSITIONS)
    assert diagram.count("-->") == len(LEGAL) + 2  # plus the start and the end
    assert "IN_PROGRESS --> CANCELLED: cancelled (background, §10.6)" in diagram
