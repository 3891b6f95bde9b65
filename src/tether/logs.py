"""Log lines: text for a terminal (the default), or one JSON object a line for a collector
(`--log-format json`).

A JSON line carries the ids of what it happened in, where known: the HTTP request (`request_id`,
the `x-request-id` the answer carries), the WebSocket connection (`connection_id`), the response
(`response_id`) and the trace (`trace_id`, `tracing.py`). Each is a context variable, set where
that thing begins; asyncio copies the context into the tasks started under it, so a line logged
anywhere below has them.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

from opentelemetry import trace

LogFormat = Literal["text", "json"]

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
CONNECTION_ID: ContextVar[str | None] = ContextVar("connection_id", default=None)
RESPONSE_ID: ContextVar[str | None] = ContextVar("response_id", default=None)
_IDS = (("request_id", REQUEST_ID), ("connection_id", CONNECTION_ID), ("response_id", RESPONSE_ID))


class JsonLines(logging.Formatter):
    def __init__(self, worker: int | None) -> None:
        super().__init__()
        self._worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self._worker is not None:
            line["worker"] = self._worker
        line.update((key, value) for key, variable in _IDS if (value := variable.get()) is not None)
        span = trace.get_current_span().get_span_context()
        if span.is_valid:  # traced (`tracing.py`), or continuing a caller's `traceparent`
            line["trace_id"] = format(span.trace_id, "032x")
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def json_line(logger: str, message: str) -> str:
    """What a line logged at INFO prints in JSON, whatever the level (the start-up banner)."""
    record = logging.makeLogRecord(
        {"name": logger, "levelname": "INFO", "levelno": logging.INFO, "msg": message}
    )
    return JsonLines(None).format(record)


def configure_logging(level: str, format: LogFormat = "text", worker: int | None = None) -> None:
    """Log from this process at `level` in `format`; `worker`: the worker's number, if one."""
    label = "" if worker is None else f"[worker {worker}] "
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonLines(worker)
        if format == "json"
        else logging.Formatter(f"%(levelname)s {label}%(name)s: %(message)s")
    )
    logging.basicConfig(level=level.upper(), handlers=[handler])
    # httpx logs every upstream request at INFO; Tether logs the ones that fail.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
