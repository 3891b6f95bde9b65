"""Custom (freeform) tools with the official SDK: offered to the model as a function taking one
string, called back as `custom_tool_call` items with their own events, answered with
`custom_tool_call_output` (spec §4.2, §6.5)."""

from __future__ import annotations

import re
from typing import Any

import openai
import pytest
from openai.types.responses import (
    ResponseCustomToolCall,
    ResponseCustomToolCallInputDeltaEvent,
    ResponseCustomToolCallInputDoneEvent,
)

from tests.conftest import LOCAL, SCRIPTED
from tests.sdk_shapes import unknown_keys
from tests.server_process import TetherServer

PATCH_TOOL: dict[str, Any] = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch to the repository.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)*/'},
}


def test_a_custom_tool_loop_over_http(scripted_server: TetherServer) -> None:
    client = scripted_server.client()
    first = client.responses.create(model=SCRIPTED, input="Fix the failing test.", tools=[PATCH_TOOL])  # type: ignore[list-item]
    [call] = first.output
    assert isinstance(call, ResponseCustomToolCall)
    assert (call.name, call.input) == ("apply_patch", "example") and call.call_id.startswith("call_")
    assert call.id is not None and call.id.startswith("ctc_")
    assert first.tools[0].model_dump(exclude_none=True) == PATCH_TOOL  # echoed as sent
    output = {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Patched."}
    then = client.responses.create(
        model=SCRIPTED, input=[output], previous_response_id=first.id, tools=[PATCH_TOOL]
    )  # type: ignore[list-item]
    assert then.status == "completed" and then.output_text
    # Stateless: the whole history sent back, the call replayed as the client got it.
    replay = [
        {"role": "user", "content": "Fix the failing test."},
        call.model_dump(exclude_none=True),
        output,
    ]
    again = client.responses.create(model=SCRIPTED, input=replay, tools=[PATCH_TOOL], store=False)  # type: ignore[arg-type]
    assert again.status == "completed"
    items = client.responses.input_items.list(then.id).data
    assert items[0].type == "custom_tool_call_output"


def test_a_custom_tool_call_streams_its_own_events_over_a_websocket(scripted_server: TetherServer) -> None:
    with scripted_server.client().responses.connect() as conn:
        conn.response.create(model=SCRIPTED, input="Fix it.", tools=[PATCH_TOOL], store=False,  # type: ignore[list-item]
                             tool_choice={"type": "custom", "name": "apply_patch"})  # fmt: skip
        events = []
        for event in conn:
            events.append(event)
            if event.type == "response.completed":
                break
    kinds = [event.type for event in events]
    assert [unknown_keys(event.to_dict()) for event in events] == [[] for _ in events]  # the SDK's shapes
    assert "response.function_call_arguments.delta" not in kinds
    deltas = [e for e in events if isinstance(e, ResponseCustomToolCallInputDeltaEvent)]
    [done] = [e for e in events if isinstance(e, ResponseCustomToolCallInputDoneEvent)]
    assert "".join(d.delta for d in deltas) == done.input == "example"
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.type == "custom_tool_call" and added.item.input == ""
    [call] = events[-1].response.output
    assert call.type == "custom_tool_call" and call.input == "example" and call.id == done.item_id


def test_tool_choice_names_a_custom_tool_only_as_custom(scripted_server: TetherServer) -> None:
    client = scripted_server.client()
    function = {"type": "function", "name": "apply_patch", "parameters": {"type": "object"}}
    for tools, choice in (([PATCH_TOOL], {"type": "function", "name": "apply_patch"}),
                          ([function], {"type": "custom", "name": "apply_patch"})):  # fmt: skip
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model=SCRIPTED, input="x", tools=tools, tool_choice=choice)  # type: ignore[arg-type]
        assert refused.value.param == "tool_choice"
    with pytest.raises(openai.BadRequestError) as malformed:
        client.responses.create(model=SCRIPTED, input="x", tools=[{**PATCH_TOOL, "format": {"type": "yaml"}}])  # type: ignore[list-item]
    assert malformed.value.param == "tools"


@pytest.mark.local_model
def test_a_forced_custom_tool_on_the_local_model(local_server: TetherServer) -> None:
    """The engine's grammar holds the call to the tool's one string: its input comes back raw."""
    client = local_server.client()
    response = client.responses.create(
        model=LOCAL, input="Write a patch that adds a README.", tools=[PATCH_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "custom", "name": "apply_patch"}, max_output_tokens=256, temperature=0,
    )  # fmt: skip
    [call] = response.output
    assert isinstance(call, ResponseCustomToolCall) and call.name == "apply_patch"
    assert call.input.startswith("*** Begin Patch")  # the tool's grammar holds it


DATE_TOOL: dict[str, Any] = {
    "type": "custom",
    "name": "set_date",
    "description": "Set the date of the meeting.",
    "format": {"type": "grammar", "syntax": "regex", "definition": r"^\d{4}-\d{2}-\d{2}$"},
}
QUERY_TOOL: dict[str, Any] = {
    "type": "custom",
    "name": "query",
    "description": "Run a query on the database.",
    "format": {"type": "grammar", "syntax": "lark", "definition": """
start: "SELECT " columns " FROM " TABLE
columns: COLUMN ("," " "? COLUMN)~0..3
COLUMN: "name" | "age" | "city"
TABLE: /[a-z]{1,12}/
"""},
}  # fmt: skip
QUERY = re.compile(r"SELECT (name|age|city)(, ?(name|age|city)){0,3} FROM [a-z]{1,12}")


@pytest.mark.local_model
def test_a_forced_custom_tool_s_regex_holds_the_local_model_s_input(local_server: TetherServer) -> None:
    response = local_server.client().responses.create(
        model=LOCAL, input="Move the meeting to the first of March 2027.", tools=[DATE_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "custom", "name": "set_date"}, max_output_tokens=64, temperature=0,
    )  # fmt: skip
    [call] = response.output
    assert response.status == "completed" and isinstance(call, ResponseCustomToolCall)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", call.input), call.input


@pytest.mark.local_model
def test_a_forced_custom_tool_s_lark_grammar_over_a_websocket(local_server: TetherServer) -> None:
    """The call is written under the grammar in the form every call is rendered in, so the
    next turn continues from the conversation's KV: its prompt is mostly cached."""
    with local_server.client().responses.connect() as conn:
        ask = "Who lives in Paris? Ask the people table."
        conn.response.create(model=LOCAL, input=ask, tools=[QUERY_TOOL],  # type: ignore[list-item]
                             tool_choice={"type": "custom", "name": "query"}, max_output_tokens=64,
                             temperature=0, store=False)  # fmt: skip
        first = next(e for e in conn if e.type == "response.completed").response
        [call] = first.output
        assert isinstance(call, ResponseCustomToolCall) and QUERY.fullmatch(call.input), call.input
        output = {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "ann, bob"}
        conn.response.create(model=LOCAL, input=[output], previous_response_id=first.id, tools=[QUERY_TOOL],  # type: ignore[list-item]
                             max_output_tokens=16, temperature=0, store=False)  # fmt: skip
        then = next(e for e in conn if e.type in ("response.completed", "response.incomplete")).response
    assert then.usage is not None and first.usage is not None
    cached = then.usage.input_tokens_details.cached_tokens
    assert cached >= first.usage.input_tokens, (cached, first.usage.input_tokens)


AGENTS: dict[str, Any] = {
    "type": "namespace",
    "name": "multi_agent",
    "description": "Tools to run helper agents.",
    "tools": [
        {"type": "function", "name": "spawn_agent", "description": "Start a helper agent.",
         "parameters": {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}},
        {"type": "custom", "name": "send_input", "description": "Write to a helper agent."},
    ],
}  # fmt: skip


@pytest.mark.parametrize("transport", ["http", "ws"])
def test_a_namespaced_tool_loop(scripted_server: TetherServer, transport: str) -> None:
    """Offered under an unambiguous name, called back in the namespaced form the SDK declares."""
    client = scripted_server.client()

    def create(**params: Any) -> Any:
        if transport == "http":
            return client.responses.create(model=SCRIPTED, tools=[AGENTS], **params)
        with client.responses.connect() as conn:
            conn.response.create(model=SCRIPTED, tools=[AGENTS], **params)
            for event in conn:
                assert not unknown_keys(event.to_dict()), event  # exactly the SDK's shapes
                if event.type == "response.completed":
                    return event.response
        raise AssertionError("the socket closed before the response completed")

    first = create(input="Start a helper for the tests.")
    [call] = first.output
    assert (call.type, call.name, call.namespace) == ("function_call", "spawn_agent", "multi_agent")
    assert call.arguments == '{"task":"example"}'
    echoed = first.tools[0].model_dump(exclude_none=True)
    assert (echoed["type"], echoed["name"], echoed["description"]) == (
        "namespace",
        "multi_agent",
        AGENTS["description"],
    )
    assert [(tool["type"], tool["name"]) for tool in echoed["tools"]] == [
        ("function", "spawn_agent"),
        ("custom", "send_input"),
    ]
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "Started."}
    then = create(input=[output], previous_response_id=first.id)
    assert then.status == "completed" and then.output_text
    replay = [{"role": "user", "content": "Start a helper."}, call.model_dump(exclude_none=True), output]
    assert create(input=replay, store=False).status == "completed"


def test_a_custom_tool_in_a_namespace_is_called_by_its_name(scripted_server: TetherServer) -> None:
    response = scripted_server.client().responses.create(
        model=SCRIPTED, input="Tell the helper to stop, with send_input.", tools=[AGENTS]
    )
    [call] = response.output
    assert isinstance(call, ResponseCustomToolCall)
    assert (call.name, call.namespace, call.input) == ("send_input", "multi_agent", "example")


def test_namespaces_can_be_left_unoffered(tmp_path: Any) -> None:
    """`--no-tool-namespaces`: for a model whose context cannot hold them, dropped like a tool
    Tether cannot run."""
    with TetherServer(tmp_path / "tether.db", "--no-tool-namespaces") as server:
        response = server.client().responses.create(
            model=SCRIPTED, input="Start a helper.", tools=[AGENTS, PATCH_TOOL]
        )
    assert [tool.type for tool in response.tools] == ["custom"]
    assert response.output[0].type == "custom_tool_call"  # the only tool offered
