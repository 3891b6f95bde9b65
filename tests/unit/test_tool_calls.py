"""Calls written in a free answer, found as the answer streams: wherever the pieces break, the
same text, the same calls and the same arguments come out."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from tether.backends.base import TextDelta, ToolCallDelta, ToolCallStarted
from tether.backends.local.tool_calls import CallScanner, Event
from tether.backends.local.tool_formats import (
    FUNCTION_GEMMA,
    HERMES,
    LLAMA3,
    MISTRAL,
    PHI4_MINI,
    ToolFormat,
    native_format,
)


def scan(
    text: str,
    cuts: list[int] = (),  # type: ignore[assignment]
    format: ToolFormat = HERMES,
    forced: bool = False,
) -> list[Event]:
    scanner, events, start = CallScanner(format, forced), [], 0
    for cut in [*sorted(cuts), len(text)]:
        events += scanner.feed(text[start:cut])
        start = max(start, cut)
    return events + scanner.finish()


def joined(events: list[Event]) -> list[tuple[str, str]]:
    """Consecutive events of one kind as one: ("text", ...) and ("call NAME", arguments)."""
    parts: list[tuple[str, str]] = []
    for event in events:
        if isinstance(event, ToolCallStarted):
            parts.append((f"call {event.name}", ""))
        elif isinstance(event, ToolCallDelta):
            parts[-1] = (parts[-1][0], parts[-1][1] + event.arguments)
        elif parts and parts[-1][0] == "text":
            parts[-1] = ("text", parts[-1][1] + event.text)
        else:
            parts.append(("text", event.text))
    return parts


def call(name: str, arguments: object) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


ANSWER = f"Let me look.\n{call('get_weather', {'city': 'Paris', 'at': {'h': 9}})}\n{call('get_time', {})}\n"


def test_text_then_two_calls() -> None:
    assert joined(scan(ANSWER)) == [
        ("text", "Let me look."),
        ("call get_weather", '{"city": "Paris", "at": {"h": 9}}'),
        ("call get_time", "{}"),
    ]


@given(st.lists(st.integers(min_value=0, max_value=len(ANSWER)), max_size=12))
def test_wherever_the_pieces_break(cuts: list[int]) -> None:
    assert joined(scan(ANSWER, cuts)) == joined(scan(ANSWER))


@given(st.text(alphabet=st.sampled_from("ab <>_/tolc{}\n"), max_size=40), st.lists(st.integers(0, 40)))
def test_text_without_a_call_comes_out_whole(text: str, cuts: list[int]) -> None:
    if "<tool_call>" in text:
        return
    events = scan(text, cuts)
    assert all(isinstance(event, TextDelta) for event in events)
    assert "".join(event.text for event in events if isinstance(event, TextDelta)) == text


def test_what_only_looks_like_a_call_is_text() -> None:
    assert joined(scan("Use <tool_call> tags like this.")) == [("text", "Use <tool_call> tags like this.")]
    assert joined(scan('<tool_call>\n{"name": "f", "argu')) == [("text", '<tool_call>\n{"name": "f", "argu')]


def test_a_call_cut_short_keeps_what_it_wrote() -> None:
    assert joined(scan('<tool_call>\n{"name": "f", "arguments": {"a": [1, 2')) == [("call f", '{"a": [1, 2')]


LLAMA3_CALL = '{"name": "get_weather", "parameters": {"city": "Rome", "at": {"h": 9}}}'


@given(st.lists(st.integers(min_value=0, max_value=len(LLAMA3_CALL)), max_size=10))
def test_llama_3_s_call_is_the_whole_answer(cuts: list[int]) -> None:
    assert joined(scan(LLAMA3_CALL, cuts, LLAMA3)) == [
        ("call get_weather", '{"city": "Rome", "at": {"h": 9}}')
    ]


def test_llama_3_s_text_is_text() -> None:
    assert joined(scan("It is sunny {mostly}.", [3], LLAMA3)) == [("text", "It is sunny {mostly}.")]
    assert joined(scan('\n{"not": "a call"}', [], LLAMA3)) == [("text", '\n{"not": "a call"}')]


def test_llama_3_s_several_calls() -> None:
    answer = f'{LLAMA3_CALL}; {{"type": "function", "name": "f", "parameters": {{}}}}'
    assert joined(scan(answer, [], LLAMA3)) == [
        ("call get_weather", '{"city": "Rome", "at": {"h": 9}}'),
        ("call f", "{}"),
    ]


# Braces, brackets, commas and quotes inside the arguments are no end of a call.
TRICKY = {"q": 'a "}], {" b\\', "n": [1, {"x": None}], "t": True}
LISTED = (
    'Sure. [TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123XYZ"}, '
    + json.dumps({"name": "search", "arguments": TRICKY})
    + "]"
)


@given(st.lists(st.integers(min_value=0, max_value=len(LISTED)), max_size=12))
def test_mistral_s_list_of_calls(cuts: list[int]) -> None:
    assert joined(scan(LISTED, cuts, MISTRAL)) == [
        ("text", "Sure."),
        ("call get_weather", '{"city": "Paris"}'),
        ("call search", json.dumps(TRICKY)),
    ]


@given(st.lists(st.integers(min_value=0, max_value=len(LISTED)), max_size=12))
def test_phi_4_mini_s_list_of_calls_and_text_after_it(cuts: list[int]) -> None:
    answer = LISTED.replace("[TOOL_CALLS] ", "functools") + "\nDone."
    assert joined(scan(answer, cuts, PHI4_MINI)) == [
        ("text", "Sure."),
        ("call get_weather", '{"city": "Paris"}'),
        ("call search", json.dumps(TRICKY)),
        ("text", "Done."),
    ]


def test_markup_without_a_list_of_calls_is_text() -> None:
    assert joined(scan("I can use functools for that.", [4, 12], PHI4_MINI)) == [
        ("text", "I can use functools for that.")
    ]
    assert joined(scan("See functools[1, 2]", [], PHI4_MINI)) == [("text", "See functools[1, 2]")]


@given(st.lists(st.integers(min_value=0, max_value=40), max_size=8))
def test_forced_calls_start_inside_their_markup(cuts: list[int]) -> None:
    forced = '[{"name": "f", "arguments": {"a": "}"}}]'
    assert joined(scan(forced, cuts, MISTRAL, forced=True)) == [("call f", '{"a": "}"}')]
    assert joined(scan('{"name": "f", "argu', cuts, HERMES, forced=True)) == []  # cut before a call


@given(st.lists(st.integers(min_value=0, max_value=len(LISTED)), max_size=6))
def test_one_call_at_most_drops_what_follows_it(cuts: list[int]) -> None:
    scanner, events, start = CallScanner(MISTRAL, one_call=True), [], 0
    for cut in [*sorted(cuts), len(LISTED)]:
        events += scanner.feed(LISTED[start:cut])
        start = max(start, cut)
    assert joined(events + scanner.finish()) == [("text", "Sure."), ("call get_weather", '{"city": "Paris"}')]


def test_calls_are_counted_when_whole() -> None:
    scanner = CallScanner(MISTRAL)
    scanner.feed('[TOOL_CALLS][{"name": "a", "arguments": {"x": 1}')
    assert (scanner.calls, scanner.closed) == (1, 0)
    scanner.feed("}, ")
    assert (scanner.calls, scanner.closed) == (1, 1)


def test_which_templates_write_calls_themselves_and_how() -> None:
    hermes = "{% for call in message.tool_calls %}<tool_call>{{ call | tojson }}</tool_call>{% endfor %}"
    llama3 = '<|start_header_id|>{% for c in m.tool_calls %}{"name": .., "parameters": ..}{% endfor %}'
    mistral = '{% if m.tool_calls %}{{ "[TOOL_CALLS] [" }}{% endif %}'
    phi4 = "{{ '<|system|>' + m['content'] + '<|tool|>' + m['tools'] + '<|/tool|>' + '<|end|>' }}"
    assert native_format(hermes) is HERMES and native_format(llama3) is LLAMA3
    assert native_format(mistral) is MISTRAL and native_format(phi4) is PHI4_MINI
    assert native_format("<|im_start|>{{ m.content }}") is None  # no calls of its own


ESCAPED = (
    'Checking.<start_function_call>call:get_weather{city:<escape>Par, {is} <b>"<escape>,days:3,'
    "tags:[<escape>a<escape>,<escape>b<escape>],at:{h:9.5,none:{}}}<end_function_call>"
    "<start_function_call>call:get_time{}<end_function_call>"
)


@given(st.lists(st.integers(min_value=0, max_value=len(ESCAPED)), max_size=12))
def test_function_gemma_s_calls_are_read_as_json(cuts: list[int]) -> None:
    weather = {"city": 'Par, {is} <b>"', "days": 3, "tags": ["a", "b"], "at": {"h": 9.5, "none": {}}}
    parts = joined(scan(ESCAPED, cuts, FUNCTION_GEMMA))
    assert [(kind, json.loads(arguments) if kind != "text" else arguments) for kind, arguments in parts] == [
        ("text", "Checking."),
        ("call get_weather", weather),
        ("call get_time", {}),
    ]
    markup = "<start_function_call>call me, maybe"
    assert joined(scan(markup, cuts, FUNCTION_GEMMA)) == [("text", markup)]
