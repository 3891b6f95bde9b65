"""Every HTTP error of the catalogue (§7.3, §10.10), as the official SDK sees it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import SCRIPTED
from tests.integration.test_http_create import WEATHER_TOOL
from tests.server_process import TetherServer


def rejected(client: openai.OpenAI, **body: Any) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(**body)
    return caught.value


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"input": "hi"}, "model", "model"),
        ({"model": "gpt-unknown", "input": "hi"}, "model", "gpt-unknown"),
        ({"model": SCRIPTED, "input": 42}, "input", "input"),
        ({"model": SCRIPTED, "input": [{"type": "telepathy"}]}, "input", "telepathy"),
        ({"model": SCRIPTED, "input": [{"role": "robot", "content": "x"}]}, "input", "input[0].role"),
        (
            {"model": SCRIPTED, "input": "x", "tool_choice": {"type": "function", "name": "nope"}},
            "tool_choice",
            "nope",
        ),
        (
            {
                "model": SCRIPTED,
                "input": "x",
                "tools": [{"type": "web_search"}],
                "tool_choice": {"type": "web_search"},
            },
            "tool_choice",
            "web_search",
        ),
        (
            {"model": SCRIPTED, "input": "x", "tools": [{"type": "function", "name": "bad name!"}]},
            "tools",
            "tools[0].name",
        ),
        (
            {"model": SCRIPTED, "input": "x", "extra_body": {"conversation": "conv_1"}},
            "conversation",
            "Conversations",
        ),
        ({"model": SCRIPTED, "input": "x", "extra_body": {"prompt": {"id": "pmpt_1"}}}, "prompt", "Prompt"),
        ({"model": SCRIPTED, "input": "x", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", "16"),
        ({"model": SCRIPTED, "input": "x", "metadata": {"k": "v" * 513}}, "metadata", "512"),
        ({"model": SCRIPTED, "input": "x", "temperature": 3}, "temperature", "temperature"),
        ({"model": SCRIPTED, "input": "x", "max_output_tokens": 0}, "max_output_tokens", "max_output_tokens"),
        ({"model": SCRIPTED, "input": "x", "extra_body": {"generate": False}}, "generate", "WebSocket"),
        ({"model": SCRIPTED, "input": "x", "background": True, "store": False}, "store", "store"),
    ],
)
def test_invalid_requests_name_their_param(
    client: openai.OpenAI, body: dict[str, Any], param: str, fragment: str
) -> None:
    error = rejected(client, **body)
    assert error.status_code == 400
    assert error.code == "invalid_request_error"
    assert error.param == param
    assert fragment in error.message
    assert error.response.headers["x-should-retry"] == "false"


def test_unknown_previous_response_is_400_not_404(client: openai.OpenAI) -> None:
    """D1."""
    error = rejected(client, model=SCRIPTED, input="x", previous_response_id="resp_nope")
    assert error.code == "previous_response_not_found"
    assert error.body["message"] == "Previous response with id 'resp_nope' not found."  # type: ignore[index]


def test_unknown_fields_are_ignored(client: openai.OpenAI) -> None:
    """§10.2: Codex sends `client_metadata`, and a `stream_id` over HTTP is just unknown."""
    response = client.responses.create(
        model=SCRIPTED,
        input="x",
        extra_body={"client_metadata": {"a": "b"}, "stream_id": "main", "prompt_cache_key": "k"},
    )
    assert response.status == "completed" and response.prompt_cache_key == "k"


def test_malformed_json_and_non_object_bodies(scripted_server: TetherServer) -> None:
    url = scripted_server.base_url + "/responses"
    for content in (b"{not json", b"[1, 2]"):
        reply = httpx.post(url, content=content, headers={"content-type": "application/json"})
        assert reply.status_code == 400
        assert reply.json()["error"]["type"] == "invalid_request_error"


def test_not_found_and_bad_queries(client: openai.OpenAI, scripted_server: TetherServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve("resp_missing")
    assert caught.value.body == {  # type: ignore[comparison-overlap]
        "message": "Response with id 'resp_missing' not found.",
        "type": "invalid_request_error", "param": None, "code": None,
    }  # fmt: skip
    response = client.responses.create(model=SCRIPTED, input="x")
    for query, param in (("limit=0", "limit"), ("limit=101", "limit"), ("order=up", "order")):
        reply = httpx.get(f"{scripted_server.base_url}/responses/{response.id}/input_items?{query}")
        assert reply.status_code == 400 and reply.json()["error"]["param"] == param
    unknown = httpx.get(scripted_server.base_url + "/nothing-here")
    assert unknown.status_code == 404 and "error" in unknown.json()
    wrong_method = httpx.put(scripted_server.base_url + "/responses")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_compact_requires_a_model(scripted_server: TetherServer) -> None:
    reply = httpx.post(scripted_server.base_url + "/responses/compact", json={"input": "x"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "model"


def test_api_keys_are_enforced(auth_server: TetherServer) -> None:
    """§3.3, §7.3: 401 `invalid_api_key` in the spec's error shape; /healthz stays open."""
    wrong = openai.OpenAI(base_url=auth_server.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.responses.create(model=SCRIPTED, input="x")
    assert caught.value.code == "invalid_api_key"
    missing = httpx.post(auth_server.base_url + "/responses", json={"model": SCRIPTED, "input": "x"})
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    assert auth_server.client().responses.create(model=SCRIPTED, input="x").status == "completed"
    assert httpx.get(f"http://127.0.0.1:{auth_server.port}/healthz").status_code == 200


def test_tool_choice_named_function_is_honoured(client: openai.OpenAI) -> None:
    other = {**WEATHER_TOOL, "name": "get_time"}
    response = client.responses.create(
        model=SCRIPTED,
        input="x",
        tools=[WEATHER_TOOL, other],
        tool_choice={"type": "function", "name": "get_time"},
    )
    assert response.output[0].type == "function_call" and response.output[0].name == "get_time"


def test_an_oversized_body_gets_413_declared_or_chunked(limited_server: TetherServer) -> None:
    """The limit holds whether the client declares the length or streams the body in chunks."""
    body = orjson.dumps({"model": SCRIPTED, "input": "x" * 70_000})
    declared = httpx.post(limited_server.base_url + "/responses", content=body)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    chunked = httpx.post(limited_server.base_url + "/responses", content=chunks())
    for reply in (declared, chunked):
        assert reply.status_code == 413 and reply.json()["error"]["code"] == "request_too_large"
    small = httpx.post(limited_server.base_url + "/responses", json={"model": SCRIPTED, "input": "x" * 1000})
    assert small.status_code == 200
