"""Chat Completions rendering: each item's message, the tool choice, and byte stability."""

from __future__ import annotations

import dataclasses

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tether.backends.base import Generation
from tether.backends.upstream.backend import session_key
from tether.backends.upstream.render import chat_request, encode, messages
from tether.protocol.items import (
    AttachmentPart,
    FunctionCall,
    FunctionCallOutput,
    Item,
    Message,
    OpaqueItem,
    Reasoning,
    TextPart,
)
from tether.protocol.tools import FunctionTool, ToolChoice

WEATHER = FunctionTool(
    name="get_weather",
    description="Weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    strict=True,
)


def generation(*items: Item, **overrides: object) -> Generation:
    fields: dict[str, object] = {
        "response_id": "resp_1",
        "parent_id": None,
        "model": "m",
        "items": items,
        "instructions": None,
        "tools": (),
        "tool_choice": ToolChoice("auto"),
        "max_output_tokens": None,
        "cache_scope": "default",
    }
    return Generation(**(fields | overrides))  # type: ignore[arg-type]


def user(text: str, item_id: str | None = None) -> Message:
    return Message("user", (TextPart("input_text", text),), id=item_id)


def assistant(text: str) -> Message:
    return Message("assistant", (TextPart("output_text", text),))


def call(call_id: str, arguments: str = '{"city": "Paris"}') -> FunctionCall:
    return FunctionCall(call_id=call_id, name="get_weather", arguments=arguments)


def output(call_id: str, text: str) -> FunctionCallOutput:
    return FunctionCallOutput(call_id=call_id, output=text)


def test_each_item_kind_renders_as_its_chat_message() -> None:
    rendered = messages(
        generation(
            Message("developer", (TextPart("input_text", "Use metric units."),)),
            user("Weather in Paris and Rome?"),
            assistant("Checking both."),
            call("call_a"),
            call("call_b", '{"city": "Rome"}'),
            output("call_a", "22 C"),
            output("call_b", "25 C"),
            OpaqueItem("web_search_call", ()),  # never shown to the engine
            assistant("Paris 22 C, Rome 25 C."),
            instructions="Be brief.",
        )
    )
    assert rendered == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric units."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "22 C"},
        {"role": "tool", "tool_call_id": "call_b", "content": "25 C"},
        {"role": "assistant", "content": "Paris 22 C, Rome 25 C."},
    ]


def test_a_call_without_text_has_an_empty_string_content() -> None:
    (_, message) = messages(generation(user("Hi"), call("call_a")))
    assert message["content"] == "" and len(message["tool_calls"]) == 1


def test_images_become_content_parts_and_other_attachments_placeholders() -> None:
    image = AttachmentPart("input_image", (("image_url", "data:image/png;base64,AAAA"), ("detail", "low")))
    file = AttachmentPart("input_file", (("file_id", "file_1"), ("filename", "notes.txt")))
    (message,) = messages(generation(Message("user", (TextPart("input_text", "What is this?"), image, file))))
    assert message["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
        {"type": "text", "text": "[file: notes.txt]"},
    ]


def test_tool_choice_forms() -> None:
    time = dataclasses.replace(WEATHER, name="get_time")

    def choice(tool_choice: ToolChoice, tools: tuple[FunctionTool, ...] = (WEATHER, time)) -> object:
        return chat_request(
            generation(user("x"), tools=tools, tool_choice=tool_choice), "m", "k", stream=True
        )["tool_choice"]

    named = {"type": "function", "function": {"name": "get_weather"}}
    assert choice(ToolChoice("auto")) == "auto"
    assert choice(ToolChoice("none")) == "none"
    assert choice(ToolChoice("required")) == "required"
    assert choice(ToolChoice("required", ("get_weather",))) == named
    assert choice(ToolChoice("required"), (WEATHER,)) == named  # one tool to call: that one, named


def test_tools_come_before_messages_and_what_varies_after() -> None:
    body = chat_request(
        generation(user("x"), tools=(WEATHER,), max_output_tokens=9, temperature=0.5), "m", "key", stream=True
    )
    assert list(body) == [
        "model", "tools", "messages", "tool_choice", "parallel_tool_calls", "max_tokens",
        "temperature", "top_p", "user", "stream", "stream_options",
    ]  # fmt: skip
    assert body["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                          "parameters": dict(WEATHER.parameters), "strict": True}}
    ]  # fmt: skip
    assert body["user"] == "key" and body["stream_options"] == {"include_usage": True}


def test_a_changed_tool_choice_leaves_the_shared_bytes_alone() -> None:
    """Agents flip `required` and `auto`; the tools and messages must still be a byte prefix."""
    first = encode(chat_request(generation(user("x"), tools=(WEATHER,)), "m", "k", stream=True))
    forced = generation(user("x"), call("call_a"), output("call_a", "ok"), tools=(WEATHER,),
                        tool_choice=ToolChoice("required", ("get_weather",)))  # fmt: skip
    second = encode(chat_request(forced, "m", "k", stream=True))
    shared = first[: first.index(b"]", first.index(b'"messages"'))]
    assert second.startswith(shared)


def test_thinking_goes_on_the_assistant_message_after_it_under_both_names() -> None:
    rendered = messages(
        generation(
            user("Weather?"),
            Reasoning("Ask the tool.", ()),
            call("call_a"),
            output("call_a", "22 C"),
            Reasoning("", ()),  # nothing readable: nothing shown
            assistant("22 C."),
            Reasoning("Lost.", ()),  # followed by no assistant message: shown to none
            user("Thanks."),
            assistant("Welcome."),
        )
    )
    assert rendered[1] == {"role": "assistant", "content": "", "reasoning_content": "Ask the tool.",
                           "reasoning": "Ask the tool.", "tool_calls": rendered[1]["tool_calls"]}  # fmt: skip
    assert rendered[3] == {"role": "assistant", "content": "22 C."}
    assert rendered[5] == {"role": "assistant", "content": "Welcome."}


_ITEMS = st.sampled_from(
    [user("a"), user("b"), assistant("c"), call("call_1"), call("call_2"), output("call_1", "o"),
     Reasoning("thinking", ()), OpaqueItem("web_search_call", ())]
)  # fmt: skip


@given(st.lists(_ITEMS, max_size=12), st.integers(min_value=0, max_value=12))
def test_a_continuation_s_messages_extend_the_earlier_ones(items: list[Item], cut: int) -> None:
    """Append-only: the first k items render to a prefix of what all of them render to, unless
    item k is a call that joins the assistant message before it."""
    cut = min(cut, len(items))
    if cut < len(items) and isinstance(items[cut], FunctionCall):
        return
    earlier = messages(generation(*items[:cut], instructions="i"))
    later = messages(generation(*items, instructions="i"))
    assert later[: len(earlier)] == earlier
    assert orjson.dumps(later).startswith(orjson.dumps(earlier)[:-1])


def test_session_key_prefers_the_client_s_then_the_chain_s_first_item_within_the_tenant() -> None:
    chained = generation(user("first", "msg_root"), assistant("reply"), user("next"))
    assert session_key(chained) == "default:msg_root"
    assert session_key(dataclasses.replace(chained, prompt_cache_key="codex-42")) == "default:codex-42"
    assert session_key(generation()) == "default:resp_1"
    other_tenant = dataclasses.replace(chained, prompt_cache_key="codex-42", cache_scope="team-b")
    assert session_key(other_tenant) == "team-b:codex-42"


def test_a_cache_salt_goes_in_the_body_only_when_given() -> None:
    assert "cache_salt" not in chat_request(generation(user("hi")), "m", "k", stream=True)
    body = chat_request(generation(user("hi")), "m", "k", stream=True, cache_salt="s1")
    assert body["cache_salt"] == "s1"
    assert list(body).index("cache_salt") > list(body).index("messages")  # the prefix stays stable
