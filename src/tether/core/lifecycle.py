"""The life of one response, as one transition table (spec §5.1, §6.2), in the spirit of h11's
`_state.py`: everything that decides how a response may move is here, and nowhere else.

    CREATED ──▶ IN_PROGRESS ──▶ COMPLETED | INCOMPLETE | FAILED | CANCELLED ──▶ SETTLED

A response is CREATED once `response.created` is out. It ends exactly once, in one terminal state,
with a typed `Outcome` (its output items, usage, and the error of a failure); a `store: true`
one is stored as it ends, before its terminal event goes out. It is SETTLED once what it leaves
behind is in place: recorded by the connection that made it (§8.2), its history held. Only then
may anything rely on it, so `settled()` is the one thing to wait for: a client that chains from
a response the moment its terminal event arrives, an HTTP caller waiting for the final object, a
WebSocket lane waiting to start its next create.

A move the table does not allow is a Tether bug: `IllegalMove` names the state and the move, and
the state is left as it was.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from tether.protocol.errors import ApiError
from tether.protocol.items import Item
from tether.protocol.response import Usage


class State(enum.Enum):
    CREATED = "created"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SETTLED = "settled"


# For each state, the states it may move to and what moves it there (the diagrams' labels).
TRANSITIONS: dict[State, dict[State, str]] = {
    State.CREATED: {
        State.IN_PROGRESS: "the turn starts",
        State.COMPLETED: "a warm-up is answered (D2)",
        State.INCOMPLETE: "interrupted before it started",
        State.FAILED: "could not start",
        State.CANCELLED: "cancelled before it started",
    },
    State.IN_PROGRESS: {
        State.COMPLETED: "the model finished",
        State.INCOMPLETE: "cut short, or interrupted (D9)",
        State.FAILED: "the backend failed",
        State.CANCELLED: "cancelled (background, §10.6)",
    },
    State.COMPLETED: {State.SETTLED: "recorded"},
    State.INCOMPLETE: {State.SETTLED: "recorded"},
    State.FAILED: {State.SETTLED: "recorded"},
    State.CANCELLED: {State.SETTLED: "recorded"},
    State.SETTLED: {},
}

TERMINAL = frozenset({State.COMPLETED, State.INCOMPLETE, State.FAILED, State.CANCELLED})
# A response may be continued only once it ended in one of these (§8.2 rule 1, §8.3).
CHAINABLE = frozenset({State.COMPLETED, State.INCOMPLETE})


def is_chainable(status: str) -> bool:
    """Whether a response whose wire `status` is `status` may be continued."""
    return status in {state.value for state in CHAINABLE}


class IllegalMove(AssertionError):
    """A move a transition table forbids — of a response here, of a WebSocket session in
    `server/session.py` (a Tether bug)."""


@dataclass(frozen=True)
class Outcome:
    """What a response produced, as it ended."""

    status: State  # one of TERMINAL
    output: tuple[Item, ...]
    usage: Usage
    error: ApiError | None = None  # why it failed

    @property
    def chainable(self) -> bool:
        return self.status in CHAINABLE


class Lifecycle:
    def __init__(self) -> None:
        self._state = State.CREATED
        self._outcome: Outcome | None = None
        self._settled = asyncio.Event()

    @property
    def state(self) -> State:
        return self._state

    @property
    def ended(self) -> bool:
        """It reached a terminal state (and may be settled already)."""
        return self._outcome is not None

    @property
    def outcome(self) -> Outcome | None:
        return self._outcome

    def start(self) -> None:
        self._move(State.IN_PROGRESS)

    def end(self, outcome: Outcome) -> None:
        if outcome.status not in TERMINAL:
            raise IllegalMove(f"a response cannot end as {outcome.status.value}")
        self._move(outcome.status)
        self._outcome = outcome

    def settle(self) -> None:
        self._move(State.SETTLED)
        self._settled.set()

    async def settled(self) -> Outcome:
        """Wait until the response is settled; how it ended."""
        await self._settled.wait()
        assert self._outcome is not None
        return self._outcome

    def _move(self, to: State) -> None:
        if to not in TRANSITIONS[self._state]:
            raise IllegalMove(f"a response cannot move from {self._state.value} to {to.value}")
        self._state = to


E = TypeVar("E", bound=enum.Enum)


def mermaid(transitions: Mapping[E, Mapping[E, str]]) -> str:
    """A Mermaid state diagram of a transition table, for docs/architecture.md."""
    lines = ["stateDiagram-v2"]
    first = next(iter(transitions))
    lines.append(f"    [*] --> {first.name}")
    for source, moves in transitions.items():
        lines.extend(f"    {source.name} --> {target.name}: {label}" for target, label in moves.items())
        if not moves:
            lines.append(f"    {source.name} --> [*]")
    return "\n".join(lines)
