"""The soak's own checks catch what they are there to catch."""

from __future__ import annotations

from tether.bench.soak import Agent, Pending, SoakPlan, SoakResult, _check_totals

FIGURES = {"rss": 1.0, "tasks": 3.0, "running": 0.0, "connections": 0.0}


def agent() -> Agent:
    return Agent("ws://unused", SoakPlan(), 0, SoakResult(), {})


def test_a_gap_in_sequence_numbers_is_a_violation() -> None:
    a, pending = agent(), Pending(lane=None, store=False)
    a._ended(pending, {"type": "response.created", "sequence_number": 0, "response": {"id": "r"}})
    a._ended(pending, {"type": "response.output_text.delta", "sequence_number": 2})
    assert a.result.violations == ["sequence 2 where 1 was due"]


def test_an_error_after_created_is_a_violation() -> None:
    a, pending = agent(), Pending(lane=None, store=False)
    a._ended(pending, {"type": "response.created", "sequence_number": 0, "response": {"id": "r"}})
    assert a._ended(pending, {"type": "error", "status": 400, "error": {}})
    assert a.result.violations and "after response.created" in a.result.violations[0]


def test_totals_leftovers_and_leaked_tasks_are_violations() -> None:
    result = SoakResult(creates=3, terminals=2, errors=0, before=FIGURES,
                        after={**FIGURES, "running": 1.0, "tasks": 5.0})  # fmt: skip
    _check_totals(result)
    assert len(result.violations) == 3
