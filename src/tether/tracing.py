"""OpenTelemetry traces, off unless the standard `OTEL_*` variables ask for them.

On when `OTEL_TRACES_EXPORTER` is `otlp` or an OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`
or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), unless `OTEL_SDK_DISABLED` is true: spans then go,
batched, by OTLP over HTTP (protobuf), and the SDK's own variables (service name, headers,
sampling, batch delay) apply. Off, the API's tracer is a no-op and a span costs a call.

The spans:
- `HTTP <method>`: each HTTP request (server kind), continuing the caller's `traceparent`;
- `websocket`: a WebSocket connection, its whole life (server kind);
- `response`: one response, from its request to its settling. Over HTTP it is a child of the
  request's span; over a WebSocket it starts a trace of its own, linked to the connection's
  span (a connection's turns can run for hours: one trace each keeps traces readable), and
  begins when its `response.create` arrived;
  - `queue`: the time that create waited on its connection (behind its lane, or for one of the
    connection's active slots), when it waited at all (`QUEUE_SPAN_MIN_S`);
  - `chain`: resolving its context (previous response, items);
  - `render`: turning it into the model's prompt;
  - `chat <model>`: the generation (client kind), with the GenAI semantic conventions'
    attributes; an upstream engine gets its `traceparent`, so its own spans join the trace;
  - `store`: writing a `store: true` response at its end.

Every span costs the SDK some 20 µs to make and its exporter some 40 µs to encode: `chain`,
`render` and `store` are children that are never made current, the cheapest kind, and a response
that is not sampled (`OTEL_TRACES_SAMPLER`) makes no children at all (`docs/benchmarks.md`
measures what tracing costs a server, whole and sampled).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

tracer = trace.get_tracer("tether")

# A create that started within this of its arrival did not wait: what is left is the event loop
# scheduling its task, which a span would only clutter the trace with.
QUEUE_SPAN_MIN_S = 0.001


def wanted() -> bool:
    """Whether the environment asks for traces."""
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    endpoint = any(os.environ.get(f"OTEL_EXPORTER_OTLP{kind}_ENDPOINT") for kind in ("", "_TRACES"))
    return endpoint or "otlp" in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")


def configure() -> None:
    """Send spans by OTLP when the environment asks for it (`wanted`); else leave the no-op."""
    if not wanted():
        return
    # Imported only when on: the SDK and its exporter cost start-up time otherwise.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def shutdown() -> None:
    """Send what is batched (at the end of a process)."""
    flush = getattr(trace.get_tracer_provider(), "shutdown", None)  # the no-op has none
    if flush is not None:
        flush()


def _incoming(headers: MutableMapping[str, str]) -> Context:
    """The caller's trace context (`traceparent`), if it sent one."""
    return propagate.extract(headers)


def outgoing(headers: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """`headers` with the current span's `traceparent` added (for an upstream engine)."""
    propagate.inject(headers)
    return headers


def http_span(method: str, path: str, headers: MutableMapping[str, str]) -> AbstractContextManager[Span]:
    """An HTTP request's span, current while it runs (`answered` adds its status)."""
    attributes: dict[str, AttributeValue] = {"http.request.method": method, "url.path": path}
    return tracer.start_as_current_span(
        f"HTTP {method}", context=_incoming(headers), kind=SpanKind.SERVER, attributes=attributes
    )


def answered(span: Span, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))


def connection_span(connection_id: str, headers: MutableMapping[str, str]) -> AbstractContextManager[Span]:
    """A WebSocket connection's span, current for its whole life: each of its responses' spans
    links to it (`response_span`)."""
    attributes: dict[str, AttributeValue] = {"tether.connection.id": connection_id}
    return tracer.start_as_current_span(
        "websocket", _incoming(headers), SpanKind.SERVER, attributes=attributes
    )


def response_span(over_websocket: bool, queued_s: float = 0.0) -> Span:
    """A response's span (not yet current): under the current span over HTTP, a root linked to
    the connection's span (the current one) over a WebSocket, begun `queued_s` ago."""
    if not over_websocket:
        return tracer.start_span("response")
    connection = trace.get_current_span().get_span_context()
    links = [Link(connection)] if connection.is_valid else []
    now = time.time_ns()
    arrived = now - int(queued_s * 1e9)
    span = tracer.start_span("response", context=Context(), links=links, start_time=arrived)
    if queued_s >= QUEUE_SPAN_MIN_S and span.is_recording():
        tracer.start_span("queue", trace.set_span_in_context(span), start_time=arrived).end(now)
    return span


@contextmanager
def phase(name: str, of: Span | None = None) -> Iterator[None]:
    """A child span of `of` (else of the current span) for what runs under it; never current,
    so what runs there makes no spans of its own."""
    parent = trace.get_current_span() if of is None else of
    if not parent.is_recording():  # not sampled (or tracing off): not even a no-op span to make
        yield
        return
    span = tracer.start_span(name, trace.set_span_in_context(parent))
    try:
        yield
    except Exception as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        span.end()


def name_response(span: Span, response_id: str, transport: str) -> None:
    span.set_attributes({"tether.response.id": response_id, "tether.transport": transport})


def end_response(span: Span, status: str) -> None:
    span.set_attribute("tether.response.status", status)
    span.end()


@contextmanager
def generation(model: str, response_id: str, temperature: float, top_p: float) -> Iterator[Span]:
    """The span of a generation, current while it runs (an upstream request carries it as its
    `traceparent`), with the GenAI conventions' request attributes; `record_usage` adds the usage
    once it is known. A response not sampled (or tracing off) gets none: its `traceparent` says
    so to the engine."""
    if not trace.get_current_span().is_recording():
        yield trace.INVALID_SPAN
        return
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.request.temperature": temperature,
        "gen_ai.request.top_p": top_p,
        "gen_ai.response.id": response_id,
    }
    with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes) as span:
        yield span


def record_usage(span: Span, input_tokens: int, cached_tokens: int, output_tokens: int) -> None:
    span.set_attributes({
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.cache_read.input_tokens": cached_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
    })  # fmt: skip


@contextmanager
def current(span: Span) -> Iterator[None]:
    """`span` current, and ended if what runs under it raises (`use_span` records the error)."""
    try:
        with trace.use_span(span):
            yield
    except BaseException:
        span.end()
        raise
