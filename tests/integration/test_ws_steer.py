"""Steering (`response.steer`, spec §4.3, §7.6, §8.6) on a real socket, on the scripted model: the
official SDK's sender, and raw frames where the exact events and their numbers matter."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from openai.types.responses import ResponseSteerAcceptedEvent

from tests.conftest import SCRIPTED
from tests.integration.test_http_create import WEATHER_TOOL
from tests.server_process import TetherServer
from tests.ws_client import TERMINAL, RawSocket


def input_texts(server: TetherServer, response_id: str) -> list[str]:
    page = server.client().responses.input_items.list(response_id, order="asc")
    return [
        part.text if item.type == "message" else f"output:{item.call_id}"  # type: ignore[union-attr]
        for item in page.data
        for part in (item.content if item.type == "message" else [item])  # type: ignore[union-attr]
    ]


def test_the_sdk_s_steer_mid_stream_stops_the_response_and_a_successor_continues_it(
    slow_server: TetherServer,
) -> None:
    settings: dict[str, Any] = {"instructions": "Be brief.", "max_output_tokens": 64, "temperature": 0.5,
                                "metadata": {"task": "story"}}  # fmt: skip
    with slow_server.client().responses.connect() as conn:
        conn.response.create(model=SCRIPTED, input="Tell me a long story.", **settings)
        events: list[Any] = []
        for event in conn:
            events.append(event)
            if event.type == "response.output_text.delta" and len(events) == 5:  # two words streamed
                conn.response.steer(previous_response_id=events[0].response.id, input="Keep it to two lines.")
            if event.type in TERMINAL and event.response.id != events[0].response.id:
                break
    target, successor = events[0].response, events[-1].response
    ended = next(event for event in events if event.type in TERMINAL)
    [accepted] = [event for event in events if event.type == "response.steer.accepted"]
    assert isinstance(accepted, ResponseSteerAcceptedEvent)
    assert accepted.steer.previous_response_id == target.id and accepted.steer.id.startswith("steer_")
    # The target stopped at the next word: incomplete, steered, its output what it had streamed.
    assert ended.response.status == "incomplete" and ended.response.incomplete_details.reason == "steered"
    streamed = "".join(
        e.delta for e in events[: events.index(ended)] if e.type == "response.output_text.delta"
    )
    assert ended.response.output_text == streamed and 2 <= ended.response.usage.output_tokens < 64
    # Its events, the acceptance among them, are numbered 0, 1, 2, ... in the order they came.
    own = events[: events.index(ended) + 1]
    assert [event.sequence_number for event in own] == list(range(len(own)))
    # The successor: chained to it, with its settings, the steer as its only input ...
    created = events[events.index(ended) + 1]
    assert created.type == "response.created" and created.sequence_number == 0
    assert successor.previous_response_id == target.id and successor.status == "completed"
    inherited = (
        successor.instructions,
        successor.max_output_tokens,
        successor.temperature,
        successor.metadata,
    )
    assert inherited == ("Be brief.", 64, 0.5, {"task": "story"})
    assert input_texts(slow_server, successor.id) == ["Keep it to two lines."]
    # ... continuing the same conversation: all the steered response had, output too, was cached.
    usage = ended.response.usage
    assert successor.usage.input_tokens_details.cached_tokens >= usage.input_tokens + usage.output_tokens
    stored = slow_server.client().responses.retrieve(target.id)
    assert stored.status == "incomplete" and stored.incomplete_details.reason == "steered"  # type: ignore[union-attr]
    # Stored, it is chainable from anywhere: here over HTTP, as a fork beside its successor.
    fork = slow_server.client().responses.create(
        model=SCRIPTED, input="Go on.", instructions="Be brief.", previous_response_id=target.id
    )
    assert fork.status == "completed" and fork.usage.input_tokens_details.cached_tokens > 0  # type: ignore[union-attr]


def test_a_steer_after_the_response_completed_still_starts_its_successor(
    scripted_server: TetherServer,
) -> None:
    with RawSocket(scripted_server) as ws:
        done = ws.turn(input="Plan a trip.", store=False)
        target, last = done[0]["response"]["id"], done[-1]["sequence_number"]
        ws.steer(target, "Make it two days.")
        accepted = ws.recv()
        successor = ws.until_done()
        ws.steer(target, "And cheaper.")  # it has been continued: too late for it
        late = ws.recv()
        ws.steer(successor[0]["response"]["id"], "And cheaper.")  # its successor takes it
        again = [ws.recv(), *ws.until_done()]
    assert done[-1]["type"] == "response.completed"
    assert accepted["type"] == "response.steer.accepted" and accepted["sequence_number"] == last + 1
    assert successor[0]["response"]["previous_response_id"] == target
    assert successor[-1]["type"] == "response.completed"
    assert late["type"] == "response.steer.failed" and late["sequence_number"] == last + 2
    assert late["error"]["code"] == "response_already_completed" and "id" not in late["steer"]
    assert again[0]["type"] == "response.steer.accepted"
    assert again[1]["response"]["previous_response_id"] == successor[0]["response"]["id"]


def test_steers_queued_mid_stream_make_one_successor_with_their_input_in_order(
    slow_server: TetherServer,
) -> None:
    texts = ["First this.", "Then that.", "Last, this."]
    with RawSocket(slow_server) as ws:
        ws.create(input="Write an essay.")
        created = ws.recv()
        for text in texts:
            ws.steer(created["response"]["id"], text)
        target = ws.until("response.incomplete")
        successor = ws.until_done()
    accepted = [event for event in target if event["type"] == "response.steer.accepted"]
    assert len(accepted) == 3 and len({event["steer"]["id"] for event in accepted}) == 3
    assert target[-1]["response"]["incomplete_details"] == {"reason": "steered"}
    assert successor[-1]["type"] == "response.completed"
    assert input_texts(slow_server, successor[0]["response"]["id"]) == texts


def test_a_response_that_called_a_tool_keeps_its_steers_until_the_output_comes(
    scripted_server: TetherServer,
) -> None:
    """§8.6 step 5: `pending` with the stubs of what it waits for; the client's create that brings
    the output gets the steers in front of its input; no more than 8 steers wait."""
    with RawSocket(scripted_server) as ws:
        done = ws.turn(input="Weather in Paris?", tools=[WEATHER_TOOL])
        target = done[-1]["response"]
        [call] = target["output"]
        replies = []
        for n in range(9):
            ws.steer(target["id"], f"Steer {n}.")
            replies += [ws.recv()] if n == 8 else [ws.recv(), ws.recv()]
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"temp": 21}'}
        after = ws.turn(input=[output], previous_response_id=target["id"], tools=[WEATHER_TOOL])
    assert call["type"] == "function_call" and target["status"] == "completed"
    kinds = [reply["type"] for reply in replies]
    assert kinds == ["response.steer.accepted", "response.steer.pending"] * 8 + ["response.steer.failed"]
    assert [reply["sequence_number"] for reply in replies] == list(range(len(done), len(done) + 17))
    pending = replies[1]
    assert pending["reason"] == "waiting_for_required_input"
    assert pending["steer"] == replies[0]["steer"]
    assert pending["required_input"] == [
        {"type": "function_call_output", "call_id": call["call_id"], "name": "get_weather"}
    ]
    assert replies[-1]["error"]["code"] == "too_many_pending_steers"
    assert after[-1]["type"] == "response.completed"
    texts = input_texts(scripted_server, after[0]["response"]["id"])
    assert texts == [f"Steer {n}." for n in range(8)] + [f"output:{call['call_id']}"]


def test_a_steer_while_a_tool_call_is_written_lets_the_call_finish(slow_server: TetherServer) -> None:
    with RawSocket(slow_server) as ws:
        ws.create(input="Weather in Paris?", tools=[WEATHER_TOOL], store=False)
        created = ws.recv()
        ws.until("response.function_call_arguments.delta")
        ws.steer(created["response"]["id"], "In Celsius.")
        events = ws.until("response.steer.pending")
    [done] = [event for event in events if event["type"] == "response.completed"]
    [call] = done["response"]["output"]
    assert call["status"] == "completed" and call["arguments"] == '{"city":"example","days":1}'
    assert [event["type"] for event in events].index("response.steer.accepted") < events.index(done)


def test_a_steer_on_a_named_lane_keeps_its_lane_and_its_place(slow_server: TetherServer) -> None:
    """The replies and the successor carry the target's `stream_id`, and a create queued on that
    lane runs after the successor (§8.1)."""
    with RawSocket(slow_server) as ws:
        ws.create(input="Draft a plan.", stream_id="plans", store=False)
        ws.create(input="Queued after it.", stream_id="plans", store=False)
        created = ws.recv()
        ws.steer(created["response"]["id"], "Two weeks only.")
        events = [created]
        while sum(event["type"] in TERMINAL for event in events) < 3:
            events.append(ws.recv())
    assert all(event.get("stream_id") == "plans" for event in events)
    starts = [event["response"] for event in events if event["type"] == "response.created"]
    assert starts[1]["previous_response_id"] == starts[0]["id"]  # the successor came first
    assert starts[2]["previous_response_id"] is None
    assert [event["type"] for event in events].index("response.steer.accepted") < events.index(
        next(event for event in events if event["type"] in TERMINAL)
    )


def test_a_malformed_steer_is_invalid_input_with_its_input_returned(scripted_server: TetherServer) -> None:
    """§4.3: not an `error` event; it reached no response, so it is numbered like one."""
    wrong = [{"role": "assistant", "content": "I am not the user."}]
    with RawSocket(scripted_server) as ws:
        ws.send({"type": "response.steer", "previous_response_id": "resp_x", "input": wrong})
        refused = ws.recv()
        ws.send({"type": "response.steer", "previous_response_id": "resp_x", "input": "x", "stream_id": "a"})
        with_lane = ws.recv()
        events = ws.turn(input="Still here?")
    assert refused["type"] == with_lane["type"] == "response.steer.failed"
    assert refused["error"] == {
        "type": "invalid_request_error",
        "code": "invalid_input",
        "message": refused["error"]["message"],
    }
    assert refused["steer"] == {"previous_response_id": "resp_x", "input": wrong}
    assert "stream_id" in with_lane["error"]["message"] and "stream_id" not in with_lane
    assert [refused["sequence_number"], with_lane["sequence_number"]] == [0, 1]
    assert events[-1]["type"] == "response.completed"


def test_failures_name_their_cause_and_the_connection_stays_usable(scripted_server: TetherServer) -> None:
    stored = scripted_server.client().responses.create(model=SCRIPTED, input="Over HTTP.")
    compacting = [{"type": "compaction", "compact_threshold": 100_000}]
    with RawSocket(scripted_server) as ws:
        ws.steer("resp_unknown", "x")
        unknown = ws.recv()
        ws.steer(stored.id, "x")  # stored, but not this connection's
        elsewhere = ws.recv()
        done = ws.turn(input="Plan a trip.", context_management=compacting, store=False)
        ws.steer(done[0]["response"]["id"], "x")
        compacted = ws.recv()
        still = ws.turn(input="Still here?", store=False)
    assert [unknown["sequence_number"], elsewhere["sequence_number"]] == [0, 1]
    assert unknown["error"]["code"] == elsewhere["error"]["code"] == "response_not_found"
    assert compacted["error"]["code"] == "steering_not_supported"
    assert compacted["sequence_number"] == done[-1]["sequence_number"] + 1
    assert still[-1]["type"] == "response.completed"


def test_a_disconnect_with_steers_queued_leaves_every_stored_response_ended(
    slow_server: TetherServer,
) -> None:
    client = slow_server.client()
    with RawSocket(slow_server) as ws:
        ws.create(input="Write an essay.")
        target = ws.recv()["response"]["id"]
        for text in ("One.", "Two."):
            ws.steer(target, text)
        ws.until("response.steer.accepted")
    deadline = time.monotonic() + 30
    while (
        status := client.responses.retrieve(target).status
    ) == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == "incomplete"
    metrics = httpx.get(f"http://127.0.0.1:{slow_server.port}/metrics").text
    assert 'tether_steers_total{outcome="accepted"}' in metrics


def test_the_steers_a_connection_holds_are_bounded_in_bytes_too(tmp_path: Path) -> None:
    """Steers waiting for tool output can pile up on many responses: their frames share the
    connection's queue budget (`--ws-max-queued-bytes`), one alone always waits, and a steer
    that leaves the queue gives its bytes back."""
    long_text = "word " * 600  # ~3 KB a frame: two do not fit in 4 KiB
    with (
        TetherServer(tmp_path / "tether.db", "--ws-max-queued-bytes", "4096") as server,
        RawSocket(server) as ws,
    ):
        first = ws.turn(input="Weather in Paris?", tools=[WEATHER_TOOL], store=False)[-1]["response"]
        second = ws.turn(input="Weather in Rome?", tools=[WEATHER_TOOL], store=False)[-1]["response"]
        ws.steer(first["id"], long_text)
        held = [ws.recv(), ws.recv()]
        ws.steer(second["id"], long_text)
        over = ws.recv()
        [call] = first["output"]
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": "{}"}
        ws.turn(input=[output], previous_response_id=first["id"], tools=[WEATHER_TOOL], store=False)
        ws.steer(second["id"], long_text)  # the first steer was taken: room again
        room = ws.recv()
    assert [event["type"] for event in held] == ["response.steer.accepted", "response.steer.pending"]
    assert over["error"]["code"] == "too_many_pending_steers" and "4096" in over["error"]["message"]
    assert room["type"] == "response.steer.accepted"
