"""`GET /metrics`: token and cache counters by transport, KV snapshot figures, connections."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import LOCAL, SCRIPTED
from tests.server_process import TetherServer
from tests.ws_client import RawSocket


def scrape(server: TetherServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    headers = {"Authorization": f"Bearer {server.api_key}"} if server.api_key else None
    text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", headers=headers).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_turns_are_counted_by_transport(scripted_server: TetherServer) -> None:
    before = scrape(scripted_server)
    scripted_server.client().responses.create(model=SCRIPTED, input="count me")
    with RawSocket(scripted_server) as ws:
        first = ws.turn(input="and me", store=False)[-1]["response"]
        ws.turn(input="again", store=False, previous_response_id=first["id"])
        during = scrape(scripted_server)
    after = scrape(scripted_server)
    done = "tether_responses_total"
    assert (
        value(after, done, transport="http", status="completed")
        - value(before, done, transport="http", status="completed")
        == 1
    )
    assert (
        value(after, done, transport="ws", status="completed")
        - value(before, done, transport="ws", status="completed")
        == 2
    )
    assert value(after, "tether_cached_tokens_total", transport="ws") > value(
        before, "tether_cached_tokens_total", transport="ws"
    )
    assert (
        value(after, "tether_turn_seconds_count", transport="ws")
        - value(before, "tether_turn_seconds_count", transport="ws")
        == 2
    )
    assert value(during, "tether_websocket_connections") >= 1
    assert ("tether_event_loop_lag_seconds", ()) in after  # what admission refuses new work by


@pytest.mark.local_model
def test_kv_snapshots_are_reported(local_server_one_sequence: TetherServer) -> None:
    with RawSocket(local_server_one_sequence) as ws:
        ws.turn(model=LOCAL, input="One conversation.", max_output_tokens=4, store=False)
        ws.turn(model=LOCAL, input="Another one, which displaces it.", max_output_tokens=4, store=False)
    samples = scrape(local_server_one_sequence)
    assert value(samples, "tether_kv_snapshots") >= 1
    assert value(samples, "tether_kv_snapshot_bytes") > 23_000 * 20  # ~23 KB a token
    assert value(samples, "tether_time_to_first_token_seconds_count", transport="ws") >= 2
