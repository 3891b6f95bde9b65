"""A free answer's thinking, text and calls, found as the answer streams: wherever the pieces
break, the same thinking, text and calls come out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tether.backends.base import ReasoningDelta, ToolCallDelta, ToolCallStarted
from tether.backends.local.answers import AnswerScanner
from tether.backends.local.tool_formats import HERMES


def scan(text: str, cuts: list[int], *, thinking: bool = False, calls: bool = True) -> list[tuple[str, str]]:
    """The events of `text` fed in pieces cut at `cuts`, those of one kind joined."""
    scanner, events, start = AnswerScanner(thinking, HERMES if calls else None), [], 0
    for cut in [*sorted(cuts), len(text)]:
        events += scanner.feed(text[start:cut])
        start = max(start, cut)
    parts: list[tuple[str, str]] = []
    for event in [*events, *scanner.finish()]:
        if isinstance(event, ToolCallStarted):
            parts.append((f"call {event.name}", ""))
        elif isinstance(event, ToolCallDelta):
            parts[-1] = (parts[-1][0], parts[-1][1] + event.arguments)
        else:
            kind = "thinking" if isinstance(event, ReasoningDelta) else "text"
            if parts and parts[-1][0] == kind:
                parts[-1] = (kind, parts[-1][1] + event.text)
            else:
                parts.append((kind, event.text))
    return parts


THOUGHT = (
    "<think>\nThe user wants the weather.\n</think>\n\n"
    'Checking.\n<tool_call>\n{"name": "w", "arguments": {}}\n</tool_call>'
)
CUTS = st.lists(st.integers(min_value=0, max_value=len(THOUGHT)), max_size=10)


@given(CUTS)
def test_thinking_then_text_then_a_call(cuts: list[int]) -> None:
    assert scan(THOUGHT, cuts) == [
        ("thinking", "\nThe user wants the weather.\n"),
        ("text", "Checking."),
        ("call w", "{}"),
    ]


@given(CUTS)
def test_a_turn_the_prompt_opened_in_thinking(cuts: list[int]) -> None:
    opened = THOUGHT.removeprefix("<think>")
    assert scan(opened, cuts, thinking=True)[0] == ("thinking", "\nThe user wants the weather.\n")


def test_thinking_cut_short_is_all_thinking() -> None:
    assert scan("<think>\nHmm, the", [3, 9]) == [("thinking", "\nHmm, the")]


@given(st.text(alphabet=st.sampled_from("ab <>/thinkg\n"), max_size=30), st.lists(st.integers(0, 30)))
def test_an_answer_that_does_not_open_with_thinking_is_text_as_written(text: str, cuts: list[int]) -> None:
    if text.lstrip().startswith("<think>"):
        return
    assert scan(text, cuts, calls=False) == ([("text", text)] if text else [])
