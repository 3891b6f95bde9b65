"""Tether in front of a real OpenAI-compatible engine: llama-cpp-python's server on SmolLM2.

The engine runs as its own process on loopback. Where a test needs to see what the engine
received, a recording proxy (`tests/recording_proxy.py`) sits between Tether and the engine.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from agents import Agent, ModelSettings, Runner, function_tool

from tests.agents_support import use_server
from tests.conftest import LOCAL
from tests.core_turns import turns
from tests.integration.test_http_create import WEATHER_TOOL
from tests.recording_proxy import Recorder
from tests.server_process import TetherServer
from tests.ws_client import RawSocket
from tether.backends.local.model_file import locate
from tether.backends.upstream import UpstreamBackend
from tether.backends.upstream import backend as upstream_backend
from tether.bench.servers import ServerProcess, free_port, llama_cpp_server
from tether.config import Upstream

pytestmark = pytest.mark.local_model

ENGINE_CONTEXT = 2048
FORCED = {"type": "function", "name": "get_weather"}
# Long enough that a test can act while it streams: SmolLM2 keeps counting well past 100.
LONG = {"input": "Count from 1 to 500, one number per line.", "max_output_tokens": 1500}


def engine(tmp: Path) -> ServerProcess:
    return llama_cpp_server(locate(None).path, tmp / "engine.log", n_ctx=ENGINE_CONTEXT, model_id=LOCAL)


def serve(folder: Path, *upstreams: str, flags: tuple[str, ...] = ()) -> TetherServer:
    """Tether in front of each upstream given, as 'URL' or 'NAME=URL'."""
    folder.mkdir(exist_ok=True)
    args = [arg for upstream in upstreams for arg in ("--upstream", upstream)]
    return TetherServer(folder / "tether.db", *args, *flags, model=None)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("upstream")


@pytest.fixture(scope="module")
def shared_engine(tmp: Path) -> Iterator[ServerProcess]:
    with engine(tmp) as process:
        yield process


@pytest.fixture(scope="module")
def recorder(shared_engine: ServerProcess, tmp: Path) -> Iterator[Recorder]:
    with Recorder(shared_engine, tmp) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def tether(recorder: Recorder, tmp: Path) -> Iterator[TetherServer]:
    """Tether serving the engine's model by name, through the recording proxy."""
    server = serve(tmp, f"{LOCAL}={recorder.base_url}").start()
    yield server
    server.stop()


def run_turn(conn: Any, **params: Any) -> Any:
    conn.response.create(model=LOCAL, **params)
    for event in conn:
        if event.type == "error":
            return event
        if event.type in ("response.completed", "response.failed", "response.incomplete"):
            return event.response
    raise AssertionError("the socket closed before a terminal event")


def shared_bytes(raw: str, body: dict[str, Any]) -> str:
    """`raw` up to the end of its last message: what a continuation must start with."""
    messages = orjson.dumps(body["messages"]).decode()
    end = raw.index('"messages":') + len('"messages":') + len(messages) - 1  # before the closing ]
    return raw[:end]


def test_a_websocket_tool_chain_sends_the_engine_a_byte_stable_prefix(
    tether: TetherServer, recorder: Recorder
) -> None:
    since = len(recorder.entries())
    tools = [WEATHER_TOOL]
    with tether.client().responses.connect() as conn:
        first = run_turn(conn, input="What is the weather in Paris for 2 days?", tools=tools,
                         tool_choice=FORCED, store=False, max_output_tokens=60, temperature=0)  # fmt: skip
        call = first.output[0]
        assert first.status == "completed" and call.type == "function_call", first.output
        assert call.name == "get_weather" and "city" in orjson.loads(call.arguments)
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 22 C."}
        second = run_turn(conn, previous_response_id=first.id, input=[output], tools=tools, store=False,
                          max_output_tokens=24, temperature=0)  # fmt: skip
        assert second.status in ("completed", "incomplete") and second.output_text
        third = run_turn(conn, previous_response_id=second.id, input="And tomorrow?", tools=tools,
                         store=False, max_output_tokens=24, temperature=0)  # fmt: skip
        assert third.output_text

    sent = recorder.completions(since)
    assert len(sent) == 3
    assert sent[0]["json"]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent[1]["json"]["tool_choice"] == "auto"
    # The engine is sent back exactly the call it made, under the call id the client saw.
    replayed = sent[1]["json"]["messages"][-2]
    assert replayed["tool_calls"] == [
        {
            "id": call.call_id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": call.arguments},
        }
    ]
    assert sent[1]["json"]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": call.call_id,
        "content": "Sunny, 22 C.",
    }
    for earlier, later in itertools.pairwise(sent):
        assert later["body"].startswith(shared_bytes(earlier["body"], earlier["json"]))
    # One conversation, one session key: a router keeps it on the replica with its cache.
    keys = {entry["session"] for entry in sent} | {entry["json"]["user"] for entry in sent}
    assert len(keys) == 1 and None not in keys


def tool_loop(
    tether: TetherServer, recorder: Recorder, tool: dict[str, Any], ask: str, result: str, **forcing: Any
) -> tuple[Any, list[dict[str, Any]]]:
    """A call the engine is made to write, and `result` sent back as its output over the same
    socket: the call, and the two request bodies the engine got."""
    since = len(recorder.entries())
    output_type = "custom_tool_call_output" if tool["type"] == "custom" else "function_call_output"
    with tether.client().responses.connect() as conn:
        first = run_turn(conn, input=ask, tools=[tool], store=False, max_output_tokens=60, temperature=0,
                         **forcing)  # fmt: skip
        [call] = first.output
        output = {"type": output_type, "call_id": call.call_id, "output": result}
        second = run_turn(conn, previous_response_id=first.id, input=[output], tools=[tool], store=False,
                          max_output_tokens=16, temperature=0)  # fmt: skip
        assert second.status in ("completed", "incomplete")
    return call, [entry["json"] for entry in recorder.completions(since)]


def test_a_custom_tool_loop_through_the_engine(tether: TetherServer, recorder: Recorder) -> None:
    """The engine sees a function taking one string; the client gets a `custom_tool_call` with
    that string as its raw input, and its output goes back as the tool's message."""
    tool = {"type": "custom", "name": "run_shell", "description": "Run a shell command."}
    call, sent = tool_loop(tether, recorder, tool, "List the files in this folder.", "README.md",
                           tool_choice={"type": "custom", "name": "run_shell"})  # fmt: skip
    assert call.type == "custom_tool_call" and call.name == "run_shell" and call.input
    [offered] = sent[0]["tools"]
    assert offered["function"]["name"] == "run_shell"
    assert offered["function"]["parameters"]["properties"] == {"input": {"type": "string"}}
    replayed = sent[1]["messages"][-2]["tool_calls"][0]["function"]
    assert orjson.loads(replayed["arguments"]) == {"input": call.input}
    assert sent[1]["messages"][-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "README.md"}


def test_a_namespaced_tool_loop_through_the_engine(tether: TetherServer, recorder: Recorder) -> None:
    """The engine sees the namespace's function under its model name; the client gets the call
    with `namespace` and `name` apart, and the engine gets it back under the model name."""
    weather = {"type": "namespace", "name": "weather", "description": "Weather services.",
               "tools": [{**WEATHER_TOOL, "name": "forecast"}]}  # fmt: skip
    call, sent = tool_loop(tether, recorder, weather, "Weather in Paris?", "22 C", tool_choice="required")
    assert call.type == "function_call" and (call.namespace, call.name) == ("weather", "forecast")
    [offered] = sent[0]["tools"]
    assert offered["function"]["name"] == "weather__forecast"
    assert offered["function"]["description"].startswith("[weather: Weather services.]")
    replayed = sent[1]["messages"][-2]["tool_calls"][0]["function"]
    assert (replayed["name"], replayed["arguments"]) == ("weather__forecast", call.arguments)


def test_the_engine_takes_a_replayed_thinking_on_the_assistant_message(
    tether: TetherServer, recorder: Recorder
) -> None:
    """What a reasoning item says goes to the engine as `reasoning_content` (and `reasoning`)
    on the assistant message after it; an engine whose template has no use for it renders it
    not, and answers."""
    thought = {
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": "Be kind."}],
    }
    replay = [{"role": "user", "content": "Hi."}, thought, {"role": "assistant", "content": "Hello!"},
              {"role": "user", "content": "Bye."}]  # fmt: skip
    since = len(recorder.entries())
    response = tether.client().responses.create(model=LOCAL, input=replay, max_output_tokens=4, store=False)
    assert response.status in ("completed", "incomplete") and response.output_text
    (sent,) = recorder.completions(since)
    expected = {
        "role": "assistant",
        "content": "Hello!",
        "reasoning_content": "Be kind.",
        "reasoning": "Be kind.",
    }
    assert sent["json"]["messages"][1] == expected


def test_sse_over_http_streams_the_engine_s_tokens(tether: TetherServer, recorder: Recorder) -> None:
    client = tether.client()
    with client.responses.stream(
        model=LOCAL, input="Say hello.", max_output_tokens=16, temperature=0
    ) as stream:
        events = list(stream)
    types = [event.type for event in events]
    response = events[-1].response  # type: ignore[union-attr]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert "response.output_text.delta" in types
    assert types[-1] in ("response.completed", "response.incomplete")
    assert response.output_text == "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert response.output_text and response.usage is not None and response.usage.output_tokens > 0
    since = len(recorder.entries())
    follow = client.responses.create(
        model=LOCAL, previous_response_id=response.id, input="Again.", max_output_tokens=8
    )
    assert follow.status in ("completed", "incomplete")
    (sent,) = recorder.completions(since)
    assert sent["json"]["messages"][-2] == {"role": "assistant", "content": response.output_text}
    assert client.responses.retrieve(follow.id).previous_response_id == response.id


def test_a_warm_up_prefills_the_engine_with_one_token(tether: TetherServer, recorder: Recorder) -> None:
    since = len(recorder.entries())
    with RawSocket(tether) as ws:
        context = {
            "input": [{"role": "developer", "content": "The project uses pytest."}],
            "instructions": "Be terse.",
        }
        events = ws.turn(model=LOCAL, generate=False, store=False, **context)
        assert [e["type"] for e in events] == ["response.created", "response.completed"]
        warm = events[-1]["response"]
        assert warm["output"] == [] and warm["usage"]["output_tokens"] == 0
        events = ws.turn(model=LOCAL, previous_response_id=warm["id"], store=False, instructions="Be terse.",
                         input="Which test runner?", max_output_tokens=12)  # fmt: skip
        assert events[-1]["type"] in ("response.completed", "response.incomplete")
    warm_up, turn = recorder.completions(since)
    assert warm_up["json"]["max_tokens"] == 1 and warm_up["json"]["stream"] is False
    assert turn["body"].startswith(shared_bytes(warm_up["body"], warm_up["json"]))
    assert warm_up["session"] == turn["session"]


def test_cancelling_closes_the_engine_s_stream(tether: TetherServer, recorder: Recorder) -> None:
    client = tether.client()
    since = len(recorder.entries())
    response = client.responses.create(model=LOCAL, background=True, **LONG)
    deadline = time.monotonic() + 30
    while not client.responses.retrieve(response.id).output and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.responses.cancel(response.id).status == "cancelled"
    assert recorder.outcome(since) == "closed_early"


def test_an_engine_that_gives_up_mid_stream_fails_the_response(tether: TetherServer) -> None:
    """llama-cpp-python answers a prompt longer than its context with a 200 and an empty stream."""
    with tether.client().responses.connect() as conn:
        too_long = run_turn(conn, input="word " * (ENGINE_CONTEXT * 2), store=False)
        assert too_long.status == "failed" and too_long.error.code == "server_error"
        assert "without finishing" in too_long.error.message
        after = run_turn(conn, input="Hi.", store=False, max_output_tokens=4)  # the socket still works
        assert after.status in ("completed", "incomplete")


def test_a_steer_closes_the_engine_s_stream_and_the_successor_continues_it(
    tether: TetherServer, recorder: Recorder
) -> None:
    """§8.6 on an engine: the stream is closed at the next chunk, and the successor is a
    continuation whose request carries what the engine had streamed, then the steer."""
    since = len(recorder.entries())
    with RawSocket(tether) as ws:
        ws.create(model=LOCAL, store=False, temperature=0, input=LONG["input"], max_output_tokens=200)
        target = ws.steered(5, "Stop counting and say OK.")[-1]["response"]
        successor = ws.until_done()[-1]["response"]
    assert target["status"] == "incomplete" and target["incomplete_details"] == {"reason": "steered"}
    assert recorder.outcome(since) == "closed_early"
    assert successor["previous_response_id"] == target["id"] and successor["output"]
    [_, continuation] = recorder.completions(since)
    *_, answered, steering = continuation["json"]["messages"]
    assert answered == {"role": "assistant", "content": target["output"][0]["content"][0]["text"]}
    assert steering == {"role": "user", "content": "Stop counting and say OK."}
    assert continuation["json"]["max_tokens"] == 200  # the steered response's settings


def test_a_failed_response_cannot_be_steered(tether: TetherServer) -> None:
    with RawSocket(tether) as ws:
        failed = ws.turn(model=LOCAL, input="word " * (ENGINE_CONTEXT * 2), store=False)[-1]
        ws.steer(failed["response"]["id"], "Try again.")
        refused = ws.recv()
    assert failed["type"] == "response.failed"
    assert refused["type"] == "response.steer.failed" and refused["error"]["code"] == "response_not_active"
    assert refused["sequence_number"] == failed["sequence_number"] + 1 and "id" not in refused["steer"]


@pytest.mark.parametrize("cut", [1, 2])
def test_a_stream_ended_before_any_output_is_tried_once_more(
    shared_engine: ServerProcess, tmp_path: Path, cut: int
) -> None:
    """An engine that ends a stream before anything of it reached the client (here a proxy that
    lets only its first, empty event through) gets the same request once more; twice is a failure."""
    with Recorder(shared_engine, tmp_path, "--cut", str(cut)) as cutter, serve(
        tmp_path / "tether", f"{LOCAL}={cutter.base_url}"
    ) as server, server.client().responses.connect() as conn:  # fmt: skip
        response = run_turn(conn, input="Say hi.", store=False, max_output_tokens=8, temperature=0)
        after = run_turn(conn, input="Say hi.", store=False, max_output_tokens=8, temperature=0)
    streams = [
        e["outcome"] for e in cutter.entries() if "outcome" in e and e["path"] == "/v1/chat/completions"
    ]
    # The first try, one more try, and `after`; how a whole stream ends is a race ("finished" or,
    # when Tether closes the connection at `[DONE]`, "closed_early"), so only the cuts are counted.
    assert len(streams) == 3 and streams[:cut] == ["cut"] * cut and "cut" not in streams[cut:]
    if cut == 1:
        assert response.status in ("completed", "incomplete") and response.output_text
    else:
        assert response.status == "failed" and "without finishing" in response.error.message
    assert after.status in ("completed", "incomplete")  # the socket and the engine carry on


def test_tenants_get_sessions_and_cache_salts_of_their_own(
    shared_engine: ServerProcess, tmp_path: Path
) -> None:
    """Two tenants sending the same prompt under the same `prompt_cache_key` must not share an
    engine's prefix cache: each gets its own session key, and an engine that can salt its cache
    (here one that lists its models as vLLM's) a salt of its own."""
    keys = tmp_path / "keys"
    keys.write_text("alice sk-alice\nbob sk-bob\n")
    with Recorder(shared_engine, tmp_path, "--owned-by", "vllm") as engine_as_vllm, serve(
        tmp_path / "tether", f"{LOCAL}={engine_as_vllm.base_url}", flags=("--api-keys-file", str(keys))
    ) as server:  # fmt: skip
        for key in ("sk-alice", "sk-alice", "sk-bob"):
            client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
            client.responses.create(model=LOCAL, input="Hi.", prompt_cache_key="shared", max_output_tokens=4)
        sent = engine_as_vllm.completions()
    sessions = [entry["session"] for entry in sent]
    salts = [entry["json"]["cache_salt"] for entry in sent]
    assert sessions[0] == sessions[1] != sessions[2] and all(sessions)
    assert salts[0] == salts[1] != salts[2] and all(salts)
    assert not any("alice" in salt or "bob" in salt for salt in salts)  # tenant names stay out


def test_the_engine_s_key_is_sent_and_its_refusal_is_shown(tmp_path: Path) -> None:
    spec = engine(tmp_path)
    secured = ServerProcess([*spec.command, "--api_key", "sk-engine"], spec.port, "/docs", spec.log_path)
    with secured:
        right = serve(
            tmp_path / "right", f"{LOCAL}={secured.base_url}", flags=("--upstream-api-key", "sk-engine")
        )
        wrong = serve(
            tmp_path / "wrong", f"{LOCAL}={secured.base_url}", flags=("--upstream-api-key", "sk-nope")
        )
        with right, wrong:
            done = right.client().responses.create(model=LOCAL, input="Hi.", max_output_tokens=4)
            assert done.status in ("completed", "incomplete")
            with pytest.raises(openai.InternalServerError) as refused:
                wrong.client().responses.create(model=LOCAL, input="Hi.", max_output_tokens=4)
            assert "The upstream engine refused the request (HTTP 401)" in refused.value.message


def test_an_engine_silent_past_the_read_timeout_fails_the_response(
    shared_engine: ServerProcess, tmp: Path
) -> None:
    """A ~1,500-token prompt takes the engine seconds to prefill before its first byte."""
    with serve(
        tmp / "impatient", shared_engine.base_url, flags=("--upstream-read-timeout-s", "0.2")
    ) as impatient:
        with pytest.raises(openai.InternalServerError) as failed:
            impatient.client().responses.create(model=LOCAL, input="word " * 1500, max_output_tokens=4)
        assert "The upstream engine sent nothing for 0.2 s." in failed.value.message


def test_models_lists_what_the_engine_serves(shared_engine: ServerProcess, tmp: Path) -> None:
    with serve(tmp / "listing", shared_engine.base_url) as server:
        assert [m.id for m in openai.OpenAI(base_url=server.base_url, api_key="x").models.list()] == [LOCAL]


def test_several_upstreams_one_model_each(
    shared_engine: ServerProcess, recorder: Recorder, tmp: Path
) -> None:
    with serve(
        tmp / "routes", f"via-proxy={recorder.base_url}", f"direct={shared_engine.base_url}"
    ) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        assert sorted(m.id for m in client.models.list()) == ["direct", "via-proxy"]
        since = len(recorder.entries())
        client.responses.create(model="direct", input="Hi.", max_output_tokens=4)
        assert recorder.completions(since) == []
        first = client.responses.create(model="via-proxy", input="Hi.", max_output_tokens=4)
        (sent,) = recorder.completions(since)
        assert sent["json"]["model"] == "via-proxy"
        # Cache diagnostics on engines: each model's cache is its own.
        for model, seen in (("via-proxy", "cache_hit"), ("direct", "cache_miss")):
            then = client.responses.create(
                model=model, input="Again.", max_output_tokens=4, previous_response_id=first.id,
                prompt_cache_options={"comparison_response_id": first.id},
            )  # fmt: skip
            diagnostics = then.prompt_cache_diagnostics
            assert diagnostics is not None and diagnostics.type == seen
        assert diagnostics.reason == "model_changed"  # type: ignore[union-attr]
        usage = then.usage
        assert usage is not None
        assert (
            diagnostics.cache_missed_tokens == usage.input_tokens - usage.input_tokens_details.cached_tokens
        )  # type: ignore[union-attr]


def test_an_engine_killed_mid_stream_fails_the_response_and_the_socket_recovers(tmp_path: Path) -> None:
    with engine(tmp_path) as process, serve(tmp_path, process.base_url) as server, RawSocket(server) as ws:
        first = ws.turn(model=LOCAL, input="Hi.", store=False, max_output_tokens=8)[-1]["response"]
        ws.create(model=LOCAL, store=False, **LONG)
        while ws.recv()["type"] != "response.output_text.delta":
            pass
        process.kill()
        events = ws.until_done()
        assert events[-1]["type"] == "response.failed"
        error = events[-1]["response"]["error"]
        assert error["code"] == "server_error" and "closed the connection" in error["message"]

        down = ws.turn(model=LOCAL, input="Still there?", store=False)[-1]
        assert down["type"] == "error" and down["status"] == 503
        assert "not reachable" in down["error"]["message"]

        process.start()
        back = ws.turn(model=LOCAL, previous_response_id=first["id"], input="Hello again.", store=False,
                       max_output_tokens=8)  # fmt: skip
        assert back[-1]["type"] in ("response.completed", "response.incomplete")


def test_a_named_engine_down_at_start_gets_503s_until_it_is_up(tmp_path: Path) -> None:
    process = engine(tmp_path)  # its port is chosen; it is not started yet
    with serve(tmp_path, f"{LOCAL}={process.base_url}") as server:
        readyz = server.base_url.removesuffix("/v1") + "/readyz"
        not_ready = httpx.get(readyz, timeout=10)
        assert not_ready.status_code == 503 and not_ready.json()["checks"]["backend"] == "unavailable"
        client = server.client()
        with pytest.raises(openai.InternalServerError) as refused:
            client.responses.create(model=LOCAL, input="Hi.")
        assert refused.value.status_code == 503 and "not reachable" in refused.value.message
        with RawSocket(server) as ws:
            error = ws.turn(model=LOCAL, input="Hi.", store=False)[-1]
            assert error["type"] == "error" and error["status"] == 503
            with process:
                assert httpx.get(readyz, timeout=10).status_code == 200
                done = ws.turn(model=LOCAL, input="Hi.", store=False, max_output_tokens=4)[-1]
                assert done["type"] in ("response.completed", "response.incomplete")


def test_an_unnamed_engine_down_at_start_is_a_clear_startup_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(RuntimeError) as failed:
        serve(tmp_path, url).start()
    assert f"Cannot reach the upstream engine at {url}" in str(failed.value)
    assert f"--upstream NAME={url}" in str(failed.value)


def test_health_names_the_served_models(tether: TetherServer) -> None:
    health = httpx.get(f"http://127.0.0.1:{tether.port}/healthz").json()
    assert health == {"status": "ok", "models": [LOCAL]}


def test_the_agents_sdk_runs_a_tool_loop_over_a_websocket_through_the_engine(tether: TetherServer) -> None:
    """The SDK's own loop: the engine is forced to call the tool, the SDK runs it and continues."""
    cities: list[str] = []

    @function_tool
    def lookup(city: str) -> str:
        """Look a city's weather up."""
        cities.append(city)
        return f"sunny in {city}"

    agent = Agent(
        name="weather", instructions="Use the lookup tool.", model=LOCAL, tools=[lookup],
        model_settings=ModelSettings(tool_choice="lookup", max_tokens=40, temperature=0),
        tool_use_behavior="stop_on_first_tool",
    )  # fmt: skip

    async def two_runs() -> None:
        first = await Runner.run(agent, "Weather in Oslo?", max_turns=3)
        assert first.final_output == f"sunny in {cities[0]}"
        second = await Runner.run(
            agent, "And in Rome?", previous_response_id=first.last_response_id, max_turns=3
        )
        assert len(cities) == 2 and second.final_output == f"sunny in {cities[1]}"

    for _ in use_server(tether, "websocket"):
        asyncio.run(two_runs())


def counted(name: str, function: Any, calls: list[str]) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return function(*args, **kwargs)

    return call


def test_a_turn_renders_and_encodes_its_request_once(
    shared_engine: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request counted before `response.created` is the one sent: one rendering and one
    JSON encoding of the history per turn."""
    calls: list[str] = []
    for name in ("chat_request", "encode"):
        monkeypatch.setattr(upstream_backend, name, counted(name, getattr(upstream_backend, name), calls))

    async def two_turns() -> list[dict[str, Any]]:
        url = f"{LOCAL}=http://127.0.0.1:{shared_engine.port}"
        backend = await UpstreamBackend.connect(Upstream(urls=(url,)))
        turn = {"input": "Say hi.", "max_output_tokens": 4}
        try:
            return await turns(backend, tmp_path / "t.db", turn, {**turn, "previous_response_id": "{last}"})
        finally:
            await backend.aclose()

    finals = asyncio.run(two_turns())
    assert all(f["status"] in ("completed", "incomplete") for f in finals)
    assert calls == ["chat_request", "encode"] * 2
