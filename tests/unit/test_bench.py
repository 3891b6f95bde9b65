"""The benchmark's workload and report, on synthetic rows."""

from __future__ import annotations

from pathlib import Path

from tether.bench.agents import TurnResult
from tether.bench.report import by_turn, chart, comparison_markdown, markdown
from tether.bench.runner import Row, client_mode
from tether.bench.workload import CHARS_PER_TOKEN, TASK_TOKENS, TOOL_RESULT_TOKENS, TOOLS, Rollout


def test_the_workload_is_deterministic_and_sized_as_documented() -> None:
    one, again, other = Rollout(agent=0, turns=3), Rollout(agent=0, turns=3), Rollout(agent=1, turns=3)
    assert one.task == again.task != other.task
    # Runs differ by their name only, so that a server caching by content shares nothing past
    # the instructions and tools between them.
    named = Rollout(agent=0, turns=3, run="ws, 1 agent(s), run 2")
    assert named.task != one.task and named.task.split(": ", 1)[1] == one.task.split(": ", 1)[1]
    assert one.instructions == other.instructions  # every agent gets the same instructions
    assert abs(len(one.task) / CHARS_PER_TOKEN - TASK_TOKENS) < 20
    assert len(TOOLS) == 4 and all(tool["parameters"]["type"] == "object" for tool in TOOLS)


def test_the_reply_answers_a_call_or_else_talks() -> None:
    rollout = Rollout(agent=0, turns=3)
    call = {"type": "function_call", "call_id": "call_1", "name": "run_tests", "arguments": "{}"}
    answered = rollout.reply(1, [call])
    assert answered["type"] == "function_call_output" and answered["call_id"] == "call_1"
    assert abs(len(answered["output"]) / CHARS_PER_TOKEN - TOOL_RESULT_TOKENS) < 20
    talked = rollout.reply(1, [{"type": "message", "content": []}])
    assert talked["role"] == "user" and answered["output"] in talked["content"]


def rows() -> list[Row]:
    def result(turn: int, first_token: float, cached: int) -> TurnResult:
        return TurnResult(turn, 0.01, first_token, first_token * 2, 1000, cached, 500)

    return [
        Row("ws", 1, 0, 0, result(1, 1.0, 0)),
        Row("ws", 1, 0, 0, result(2, 0.2, 900)),
        Row("ws", 1, 1, 0, result(2, 0.4, 900)),
        Row("ws", 1, 0, 0, result(3, 0.3, 950)),
        Row("chat", 1, 0, 0, TurnResult(2, 0.1, 0.5, 1.0, None, None, 800)),
    ]


def test_medians_are_taken_per_mode_concurrency_and_turn() -> None:
    table = by_turn(rows(), "first_token_s")
    assert table[("ws", 1)] == {1: 1.0, 2: 0.30000000000000004, 3: 0.3}
    assert by_turn(rows(), "prefilled_tokens")[("chat", 1)] == {2: None}


def test_the_markdown_table_and_the_chart(tmp_path: Path) -> None:
    text = markdown(rows())
    assert "| ws | 1 | 0.30 | 0.30 | 1.00x | 50 |" in text
    assert "| chat | 1 | 0.50 | 0.50 | 1.00x | n/a |" in text
    chart(rows(), tmp_path / "chart.png", "test")
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_a_comparison_puts_each_mode_beside_its_baseline() -> None:
    def turn(mode: str, n: int, ms: float) -> Row:
        return Row(mode, 1, 0, 0, TurnResult(n, 0.001, 0.001, ms / 1000, 10, 0, 100))

    compared = [turn("ws", n, 2.0) for n in range(1, 21)] + [
        turn("ws@baseline", n, 4.0) for n in range(1, 21)
    ]
    text = comparison_markdown(compared, "baseline")
    assert "| mode | turns 1-20 | turns 1-10 | turns 11-20 |" in text
    assert "| ws | 4.00 → 2.00 (x0.50) | 4.00 → 2.00 (x0.50) | 4.00 → 2.00 (x0.50) |" in text
    assert client_mode("ws@baseline") == "ws" and client_mode("http-chained") == "http-chained"
