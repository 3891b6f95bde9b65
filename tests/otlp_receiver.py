"""An OTLP/HTTP trace receiver for the tests: the benchmark's sink (`tether.bench.otlp_sink`),
which takes the exports a server sends to `/v1/traces` (protobuf, gzip or not), and then decodes
them with the OpenTelemetry protocol's own classes and keeps their spans, which a test then reads
as a tree."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tether.bench.otlp_sink import OtlpSink


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # "" for a trace's root
    kind: int  # the protocol's SpanKind number (2: server, 3: client)
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]  # (trace id, span id) of each
    start_ns: int  # Unix time
    end_ns: int


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value"))


class OtlpReceiver(OtlpSink):
    def __init__(self) -> None:
        super().__init__()
        self.spans: list[Span] = []
        self._lock = threading.Lock()

    def __enter__(self) -> OtlpReceiver:
        super().__enter__()
        return self

    def wait_for(self, ready: Callable[[list[Span]], bool], timeout: float = 30.0) -> list[Span]:
        """The spans received, once `ready` says they are all there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                spans = list(self.spans)
            if ready(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(f"spans not received in {timeout} s: {[span.name for span in spans]}")

    def received(self, body: bytes, *, gzipped: bool) -> None:
        super().received(body, gzipped=gzipped)
        request = ExportTraceServiceRequest.FromString(gzip.decompress(body) if gzipped else body)
        spans = [
            Span(
                name=span.name,
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_id=span.parent_span_id.hex(),
                kind=span.kind,
                attributes={kv.key: _value(kv.value) for kv in span.attributes},
                links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
                start_ns=span.start_time_unix_nano,
                end_ns=span.end_time_unix_nano,
            )
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        with self._lock:
            self.spans += spans
