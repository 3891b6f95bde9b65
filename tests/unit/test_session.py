"""The WebSocket connection state machine, fed strings and a fake clock (§3.6-3.8, §4.1.2, §8.1)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether.config import WebSocketLimits
from tether.core.lifecycle import IllegalMove
from tether.core.steering import Due
from tether.protocol import errors
from tether.protocol.client_events import Create, Steer
from tether.protocol.steering import SteerRejected
from tether.server.session import Close, Send, Session, StartTurn, State, SteerResponse


def create(**fields: Any) -> str:
    return json.dumps({"type": "response.create", "model": "m", **fields})


def started(frame: str, lane: str | None = None) -> StartTurn:
    return StartTurn(lane, Create(json.loads(frame), len(frame)))


def session(**limits: Any) -> Session:
    return Session(WebSocketLimits(**limits), opened_at=0.0)


def assert_error(
    actions: list[Any], code: str, param: str | None = None, status: int = 400, **envelope: Any
) -> None:
    assert len(actions) >= 1 and isinstance(actions[0], Send)
    event = actions[0].event
    assert event["type"] == "error" and event["status"] == status
    assert event["error"]["code"] == code and event["error"]["param"] == param
    assert isinstance(event["sequence_number"], int)
    for key, value in envelope.items():
        assert event.get(key) == value


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        ('{"no": "type"}', "invalid_request_error", "type"),
        ('{"type": "response.cancel"}', "unknown_event_type", "type"),
        ('{"type": "response.append", "input": []}', "unknown_event_type", "type"),
    ],
)
def test_malformed_frames_get_an_error_and_the_session_stays_open(frame: str, code: str, param: str) -> None:
    """D6."""
    s = session()
    assert_error(s.receive_text(frame, now=1), code, param)
    assert s.state is State.OPEN
    assert s.receive_text(create(), now=1) == [started(create())]


def test_a_binary_frame_gets_an_error() -> None:
    assert_error(session().receive_binary(), "invalid_json")


@pytest.mark.parametrize("stream_id", ["", "a b", "x" * 257, 7, "ü"])
def test_an_invalid_stream_id_is_refused_without_echo(stream_id: object) -> None:
    actions = session().receive_text(create(stream_id=stream_id), now=1)
    assert_error(actions, "invalid_stream_id", "stream_id")
    assert "stream_id" not in actions[0].event  # type: ignore[union-attr]


def test_stream_id_of_256_characters_and_null_are_valid() -> None:
    s = session()
    assert isinstance(s.receive_text(create(stream_id="x" * 256), now=1)[0], StartTurn)
    assert s.receive_text(create(stream_id=None), now=1)[0] == started(create(stream_id=None))


def test_the_33rd_named_lane_is_refused_with_its_stream_id() -> None:
    """D4: 32 named lanes (the default lane does not count), counted for the connection's life."""
    s = session(max_active_responses=64)
    for i in range(32):
        assert isinstance(s.receive_text(create(stream_id=f"lane-{i}"), now=1)[0], StartTurn)
    assert isinstance(s.receive_text(create(), now=1)[0], StartTurn)
    actions = s.receive_text(create(stream_id="lane-32"), now=1)
    assert_error(actions, "websocket_stream_limit_reached", "stream_id", stream_id="lane-32")
    s.turn_finished("lane-0")
    assert_error(
        s.receive_text(create(stream_id="lane-33"), now=1), "websocket_stream_limit_reached", "stream_id"
    )
    assert s.receive_text(create(stream_id="lane-0"), now=1) != []  # an existing lane is reused


def test_a_lane_is_fifo_and_never_overlaps() -> None:
    s = session()
    first, second = create(input="1"), create(input="2")
    assert s.receive_text(first, now=1) == [started(first)]
    assert s.receive_text(second, now=1.5) == []  # queued silently
    (start,) = s.turn_finished(None)
    assert start == started(second)
    assert isinstance(start, StartTurn) and isinstance(start.work, Create)
    assert start.work.received_at == 1.5  # how long it waited is traced from there
    assert s.turn_finished(None) == []


def test_at_most_16_run_and_the_longest_waiting_lane_starts_next() -> None:
    s = session()
    for i in range(16):
        assert len(s.receive_text(create(stream_id=f"l{i}"), now=1)) == 1
    assert s.receive_text(create(stream_id="late-a"), now=1) == []
    assert s.receive_text(create(stream_id="late-b"), now=1) == []
    assert s.active == 16
    started = s.turn_finished("l3")
    assert [a.lane for a in started] == ["late-a"]  # type: ignore[union-attr]
    assert [a.lane for a in s.turn_finished("l4")] == ["late-b"]  # type: ignore[union-attr]


def test_limits_are_configurable_at_n_and_n_plus_one() -> None:
    s = session(max_active_responses=2, max_named_lanes=1)
    assert len(s.receive_text(create(stream_id="a"), now=1)) == 1
    assert_error(s.receive_text(create(stream_id="b"), now=1), "websocket_stream_limit_reached", "stream_id")
    assert len(s.receive_text(create(), now=1)) == 1
    assert s.receive_text(create(), now=1) == []  # the default lane is busy


def test_an_idle_connection_past_the_cap_gets_the_error_then_1001() -> None:
    """D5."""
    s = session(connection_cap_s=60)
    actions = s.cap_reached()
    assert_error(actions, "websocket_connection_limit_reached")
    assert "(1 minutes)" in actions[0].event["error"]["message"]  # type: ignore[union-attr]
    assert actions[1] == Close(1001, "connection limit reached")
    assert s.state is State.CLOSING


def test_the_cap_never_cuts_running_or_queued_work() -> None:
    s = session(connection_cap_s=10)
    s.receive_text(create(), now=1)
    s.receive_text(create(input="queued"), now=2)
    assert s.cap_reached() == []
    assert s.state is State.DRAINING
    late = s.receive_text(create(stream_id="side"), now=11)
    assert_error(late, "websocket_connection_limit_reached", None, stream_id="side")
    assert len(late) == 1
    assert s.turn_finished(None) == [started(create(input="queued"))]
    closing = s.turn_finished(None)
    assert_error(closing, "websocket_connection_limit_reached")
    assert closing[1:] == [Close(1001, "connection limit reached")]


def test_errors_outside_a_response_are_numbered_per_connection() -> None:
    """Every event carries a `sequence_number`; an `error` belongs to no response, so it takes the
    connection's own counter, from 0, on every lane."""
    s = session()
    numbers = [
        s.receive_text("{not json", now=1)[0].event["sequence_number"],  # type: ignore[union-attr]
        s.receive_binary()[0].event["sequence_number"],  # type: ignore[union-attr]
        s.receive_text(create(stream_id="bad id"), now=1)[0].event["sequence_number"],  # type: ignore[union-attr]
        s.error(errors.server_error(), "lane").event["sequence_number"],
    ]
    assert numbers == [0, 1, 2, 3]


def test_a_create_after_the_cap_is_refused_even_before_the_timer_fires() -> None:
    s = session(connection_cap_s=10)
    actions = s.receive_text(create(), now=10.5)
    assert_error(actions, "websocket_connection_limit_reached")
    assert actions[1] == Close(1001, "connection limit reached")
    assert "(10 seconds)" in actions[0].event["error"]["message"]  # type: ignore[union-attr]


def test_turn_finished_on_an_idle_lane_is_a_bug() -> None:
    with pytest.raises(AssertionError):
        session().turn_finished(None)


def test_queued_creates_are_bounded_across_lanes() -> None:
    s = session(max_active_responses=1, max_queued_creates=2)
    assert isinstance(s.receive_text(create(), now=1)[0], StartTurn)  # runs: not queued
    assert s.receive_text(create(), now=1) == []
    assert s.receive_text(create(stream_id="b"), now=1) == []
    (refusal,) = s.receive_text(create(stream_id="b"), now=1)
    assert isinstance(refusal, Send) and refusal.event["status"] == 429
    assert refusal.event["error"]["code"] == "rate_limit_exceeded" and refusal.event["stream_id"] == "b"
    assert refusal.event["error"]["headers"] == {"retry-after": "1"}
    assert isinstance(s.turn_finished(None)[0], StartTurn)  # one left the queue: room for one more
    assert s.receive_text(create(), now=1) == []


def test_admit_refuses_a_create_with_its_error_and_queues_nothing() -> None:
    def over_rate() -> None:
        raise errors.rate_limit_exceeded("slow down", 0.25)

    s = Session(WebSocketLimits(), opened_at=0.0, admit=over_rate)
    (refusal,) = s.receive_text(create(stream_id="a"), now=1)
    assert isinstance(refusal, Send) and refusal.event["error"]["message"] == "slow down"
    assert s.idle and s.named_lanes == 0


def test_after_the_shutdown_grace_queued_creates_are_refused_and_never_start() -> None:
    """Work that runs is interrupted and ends with its terminal event; a create still queued gets
    a 503 on its lane, and the socket closes 1012 once the running turn has ended."""
    s = session()
    s.receive_text(create(), now=1)
    s.receive_text(create(input="queued"), now=1)
    s.receive_text(create(stream_id="b", input="queued too"), now=1)
    s.receive_text(create(stream_id="b", input="and this"), now=1)
    assert s.shutdown() == []
    refusals = s.grace_over()
    assert [(a.event["status"], a.event.get("stream_id")) for a in refusals] == [  # type: ignore[union-attr]
        (503, None), (503, "b"),
    ]  # fmt: skip
    assert s.turn_finished("b") == []
    assert s.turn_finished(None) == [Close(1012, "server shutting down")]


def test_queued_bytes_are_bounded_at_n_and_n_plus_one() -> None:
    """§8.1 allows a bound on queued creates: their frames may hold at most `max_queued_bytes`."""
    first = create(input="a" * 1000)
    size = len(first)
    s = session(max_active_responses=1, max_queued_bytes=2 * size)
    assert isinstance(s.receive_text(create(), now=1)[0], StartTurn)  # runs: not queued
    assert s.receive_text(first, now=1) == []
    assert s.receive_text(first, now=1) == []  # 2 x size: at the bound
    (refusal,) = s.receive_text(create(), now=1)  # one byte more would pass it
    assert isinstance(refusal, Send) and refusal.event["status"] == 429
    assert refusal.event["error"]["code"] == "rate_limit_exceeded"
    assert f"maximum of {2 * size}" in refusal.event["error"]["message"]
    assert isinstance(s.turn_finished(None)[0], StartTurn)  # one left the queue: room again
    assert s.receive_text(first, now=1) == []


def test_a_create_alone_in_the_queue_always_waits() -> None:
    s = session(max_active_responses=1, max_queued_bytes=1024)
    s.receive_text(create(), now=1)
    assert s.receive_text(create(input="x" * 5000), now=1) == []


def test_a_closed_session_starts_nothing_and_says_nothing() -> None:
    """D9: on disconnect, queued creates are dropped; a turn that ends then starts no other."""
    s = session()
    s.receive_text(create(), now=1)
    s.receive_text(create(input="queued"), now=1)
    s.disconnected()
    assert s.state is State.CLOSED
    assert s.turn_finished(None) == []
    assert s.receive_text(create(), now=1) == [] and s.idle


@pytest.mark.parametrize("state", list(State))
def test_a_socket_can_go_from_every_state_but_closed(state: State) -> None:
    s = session()
    s.state = state
    if state is State.CLOSED:
        with pytest.raises(IllegalMove, match="from closed to closed"):
            s.disconnected()
        return
    s.disconnected()
    assert s.state is State.CLOSED


def test_the_cap_in_closing_changes_nothing() -> None:
    s = session(connection_cap_s=10)
    s.cap_reached()
    assert s.state is State.CLOSING
    assert s.cap_reached() == [] and s.shutdown() == []
    assert s.state is State.CLOSING


def steer_frame(**fields: Any) -> str:
    return json.dumps({"type": "response.steer", "previous_response_id": "resp_1", "input": "x", **fields})


def test_a_steer_goes_to_core_whatever_it_holds() -> None:
    """Its checks and its response are core's; the session checks only its own state."""
    s = session()
    frame = steer_frame(stream_id="a")
    [action] = s.receive_text(frame, now=1)
    assert action == SteerResponse(Steer(json.loads(frame), len(frame)))


def test_a_steer_that_reached_no_response_is_numbered_with_the_connection_s_events() -> None:
    """§4.3: not an `error` event, its input returned as sent; the session stays open."""
    s = session()
    assert_error(s.receive_text("{not json", now=1), "invalid_json")  # takes number 0
    body = json.loads(steer_frame())
    event = s.steer_failed(body, SteerRejected("response_not_found", "gone")).event
    assert event["type"] == "response.steer.failed" and event["sequence_number"] == 1
    assert event["error"]["code"] == "response_not_found" and event["steer"]["input"] == "x"
    assert s.state is State.OPEN
    assert s.receive_text(create(), now=1) == [started(create())]


def test_a_successor_runs_next_on_its_lane_ahead_of_queued_creates() -> None:
    """§8.1: a successor takes the head of its lane, and waits there while the lane is busy."""
    s = session()
    s.receive_text(create(stream_id="a"), now=1)
    queued = create(stream_id="a", input="queued")
    assert s.receive_text(queued, now=1) == []
    assert s.successor(Due("a", "resp_1")) == []  # the lane is busy
    assert s.turn_finished("a") == [StartTurn("a", Due("a", "resp_1"))]
    assert s.turn_finished("a") == [started(queued, "a")]


def test_a_successor_starts_at_once_on_an_idle_lane_within_the_active_cap() -> None:
    s = session(max_active_responses=1)
    assert s.successor(Due(None, "resp_1")) == [StartTurn(None, Due(None, "resp_1"))]
    assert s.successor(Due("b", "resp_2")) == []  # the one active slot is taken
    assert s.turn_finished(None) == [StartTurn("b", Due("b", "resp_2"))]


def test_a_steer_during_shutdown_is_refused_like_a_create() -> None:
    s = session()
    s.shutdown()
    assert_error(s.receive_text(steer_frame(), now=1), "server_error", status=503)


def test_a_steer_past_the_cap_gets_the_cap_s_error() -> None:
    s = session(connection_cap_s=10)
    assert_error(s.receive_text(steer_frame(), now=11), "websocket_connection_limit_reached")
