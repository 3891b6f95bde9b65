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
  span (a connection's turns can run for hours: one trace each keeps traces readable);
  - `chain`: resolving its context (previous response, items);
  - `render`: turning it into the model's prompt;
  - `chat <model>`: the generation (client kind), with the GenAI semantic conventions'
    attributes; an upstream engine gets its `traceparent`, so its own spans join the trace;
  - `store`: writing a `store: true` response at its end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue

tracer = trace.get_tracer("tether")


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


def response_span(over_websocket: bool) -> Span:
    """A response's span (not yet current): under the current span over HTTP, a root linked to
    the connection's span (the current one) over a WebSocket."""
    if not over_websocket:
        return tracer.start_span("response")
    connection = trace.get_current_span().get_span_context()
    links = [Link(connection)] if connection.is_valid else []
    return tracer.start_span("response", context=Context(), links=links)


def name_response(span: Span, response_id: str, transport: str) -> None:
    span.set_attributes({"tether.response.id": response_id, "tether.transport": transport})


def end_response(span: Span, status: str) -> None:
    span.set_attribute("tether.response.status", status)
    span.end()


def generation_span(model: str, response_id: str, temperature: float, top_p: float) -> Span:
    """The span of a generation (to be used with `with`), with the GenAI conventions' request
    attributes; `record_usage` adds the usage once it is known."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.request.temperature": temperature,
        "gen_ai.request.top_p": top_p,
        "gen_ai.response.id": response_id,
    }
    return tracer.start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes)


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
