"""`--log-format json`: every line a JSON object, each carrying the ids of what it happened in —
the HTTP request (the `x-request-id` answered), the WebSocket connection, the response, the
trace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_json_lines_carry_the_request_the_connection_and_the_response(tmp_path: Path) -> None:
    with TetherServer(tmp_path / "tether.db", "--log-level", "info", "--log-format", "json") as server:
        client = server.client()
        traced = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}  # a caller's trace (tracing off)
        raw = client.responses.with_raw_response.create(
            model=SCRIPTED, input="Hi.", store=False, extra_headers=traced
        )
        over_http = raw.parse()
        with client.responses.connect() as conn:
            conn.response.create(model=SCRIPTED, input="Hi.", store=False)
            over_ws = next(e for e in conn if e.type == "response.completed").response
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines()]  # all of them JSON
    assert lines[0]["message"].startswith("serving the Responses API at http://127.0.0.1:")

    def ended(response_id: str) -> dict[str, Any]:
        [line] = [line for line in lines if line["message"].startswith(f"{response_id} completed")]
        return line

    http, ws = ended(over_http.id), ended(over_ws.id)
    assert http["request_id"] == raw.headers["x-request-id"] and http["response_id"] == over_http.id
    assert "connection_id" not in http and "over http" in http["message"] and http["trace_id"] == TRACE
    assert ws["connection_id"] and ws["response_id"] == over_ws.id and "request_id" not in ws
    assert {line["level"] for line in lines} <= {"info", "warning", "error"}
    # uvicorn's own lines are JSON too, and its access line knows the request.
    [access] = [line for line in lines if line["logger"] == "uvicorn.access" and "POST" in line["message"]]
    assert access["request_id"] == raw.headers["x-request-id"]
