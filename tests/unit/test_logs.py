"""A JSON log line: the record's fields, the worker, the ids set in its context, its exception."""

from __future__ import annotations

import json
import logging
import sys

from tether.logs import CONNECTION_ID, JsonLines


def test_a_line_with_its_ids_and_its_exception() -> None:
    try:
        raise ValueError("bad input")
    except ValueError:
        failure = sys.exc_info()
    record = logging.LogRecord("tether.x", logging.ERROR, __file__, 1, "%s failed", ("it",), failure)
    token = CONNECTION_ID.set("c0ffee")
    try:
        line = json.loads(JsonLines(worker=2).format(record))
    finally:
        CONNECTION_ID.reset(token)
    assert (line["level"], line["logger"], line["message"]) == ("error", "tether.x", "it failed")
    assert (line["worker"], line["connection_id"]) == (2, "c0ffee")
    assert "ValueError: bad input" in line["exception"] and "request_id" not in line
    assert "connection_id" not in json.loads(JsonLines(worker=None).format(record))  # outside its context
