"""The error catalogue (spec §7).

    ApiError                 the client's fault, or a condition the client must be told about;
                             one value renders as an HTTP body, a flat SSE event or a WS event

Anything else raised inside Tether is our bug or a dependency's failure: the transports log it and
show only the generic `server_error` from this catalogue, never the exception's text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class ApiError(Exception):
    """One catalogue entry with its message filled in.

    Not frozen: raising assigns `__traceback__`, which a frozen dataclass refuses.
    """

    status: int
    type: str
    code: str | None
    message: str
    param: str | None = None
    retry_after_s: float | None = None  # when trying again can work: how long to wait first

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def http_headers(self) -> dict[str, str]:
        """`retry-after` when waiting helps; else a 4xx cannot be fixed by retrying, and the SDKs
        are told not to (spec §10.1)."""
        if self.retry_after_s is not None:
            return {"retry-after": str(math.ceil(self.retry_after_s))}
        return {"x-should-retry": "false"} if self.status < 500 else {}

    def payload(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}

    def http_body(self) -> dict[str, Any]:
        """The body of a non-2xx HTTP answer (spec §7.1)."""
        return {"error": self.payload()}

    def ws_event(self, sequence_number: int, stream_id: str | None = None) -> dict[str, Any]:
        """The WebSocket `error` event: nested, always with `status` (§7.1) and a `sequence_number`
        (D8; `@ai-sdk/openai` rejects an event without one)."""
        event: dict[str, Any] = {"type": "error", "sequence_number": sequence_number,
                                 "status": self.status, "error": self.ws_payload()}  # fmt: skip
        if stream_id is not None:
            event["stream_id"] = stream_id
        return event

    def ws_payload(self) -> dict[str, Any]:
        # The Open Responses schema wants a string code on WS errors, even for a 404.
        payload: dict[str, Any] = {"type": self.type, "code": self.code or self.type,
                                   "message": self.message, "param": self.param}  # fmt: skip
        if self.retry_after_s is not None:
            payload["headers"] = {"retry-after": str(math.ceil(self.retry_after_s))}  # §7.1
        return payload

    def response_error(self) -> dict[str, Any]:
        """The `error` field of a failed Response object (§7.4)."""
        return {"code": self.code, "message": self.message}


def invalid_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request_error", "invalid_request_error", message, param)


def previous_response_not_found(response_id: str) -> ApiError:
    """D1: 400, never 404."""
    return ApiError(
        400,
        "invalid_request_error",
        "previous_response_not_found",
        f"Previous response with id '{response_id}' not found.",
        "previous_response_id",
    )


def unmatched_call_id(call_id: str) -> ApiError:
    """D10: a tool output whose call_id matches no call in the chain."""
    return invalid_request(f"No tool call found for function call output with call_id {call_id}.", "input")


def response_not_found(response_id: str) -> ApiError:
    return ApiError(404, "invalid_request_error", None, f"Response with id '{response_id}' not found.", None)


def invalid_api_key() -> ApiError:
    return ApiError(
        401,
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. Pass a configured key as 'Authorization: Bearer <key>'.",
        None,
    )


def model_not_found(model: str | None, served: str) -> ApiError:
    if model is None:
        return invalid_request("Missing required parameter: 'model'.", "model")
    return invalid_request(
        f"The model '{model}' does not exist on this server. It serves '{served}'.", "model"
    )


def not_found_route(path: str) -> ApiError:
    return ApiError(404, "invalid_request_error", None, f"Unknown path '{path}'.", None)


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(405, "invalid_request_error", None, f"Method {method} is not allowed on '{path}'.", None)


def server_error() -> ApiError:
    """Generic 500: details stay in the server log (they may be sensitive)."""
    return ApiError(
        500,
        "server_error",
        "server_error",
        "The server had an error while processing your request. See the server log.",
        None,
    )


def backend_unavailable(message: str | None = None) -> ApiError:
    """503 before a response exists: the SDKs retry it, which is right for a restarting engine."""
    text = message or "The model backend is not available right now."
    return ApiError(503, "server_error", "server_error", text, None)


def backend_failed(message: str | None = None) -> ApiError:
    """The `error` of a Response that failed during generation (§7.4: `server_error`)."""
    text = message or "The model backend stopped responding."
    return ApiError(500, "server_error", "server_error", text, None)


def owner_stopped() -> ApiError:
    """The `error` of a response whose server process died before it ended (it was not kept)."""
    return ApiError(
        500,
        "server_error",
        "server_error",
        "The server process running this response stopped before it finished; send the request again.",
        None,
    )


def store_unavailable() -> ApiError:
    """503 before a `store: true` response exists, when it cannot be written: the SDKs retry."""
    return ApiError(
        503, "server_error", "server_error", "The response store is not available right now.", None
    )


def context_overflow(limit: int, needed: int) -> ApiError:
    return invalid_request(f"The input needs {needed} tokens but the model's context holds {limit}.", "input")


# --- WebSocket connection-level errors (§3.6, §7.3) -----------------------------------------------


def websocket_disabled() -> ApiError:
    """426 on the upgrade: Codex then switches the session to HTTP at once (§3.3)."""
    return ApiError(426, "invalid_request_error", "websocket_disabled",
                    "WebSocket mode is disabled on this server; use HTTP.", None)  # fmt: skip


def invalid_json(detail: str) -> ApiError:
    return ApiError(400, "invalid_request_error", "invalid_json",
                    f"Could not parse the message as JSON: {detail}.", None)  # fmt: skip


def binary_frame() -> ApiError:
    message = "Binary frames are not supported: send each event as a JSON text frame."
    return ApiError(400, "invalid_request_error", "invalid_json", message, None)


def missing_event_type() -> ApiError:
    return invalid_request("Every event needs a string 'type'.", "type")


def unknown_event_type(event_type: str) -> ApiError:
    return ApiError(400, "invalid_request_error", "unknown_event_type",
                    f"Unknown event type '{event_type}'.", "type")  # fmt: skip


def invalid_stream_id() -> ApiError:
    return ApiError(
        400, "invalid_request_error", "invalid_stream_id",
        "The 'stream_id' field must be a non-empty string with at most 256 characters and may "
        "only contain letters, numbers, underscores, hyphens, and periods.",
        "stream_id",
    )  # fmt: skip


def stream_limit_reached(max_lanes: int) -> ApiError:
    return ApiError(
        400, "invalid_request_error", "websocket_stream_limit_reached",
        f"Maximum number of distinct stream IDs ({max_lanes}) reached for this connection. "
        "Reuse an existing stream_id or open a new websocket connection.",
        "stream_id",
    )  # fmt: skip


def connection_limit_reached(cap_s: float) -> ApiError:
    """D5, in OpenAI's words; the number is the configured cap."""
    span = f"{cap_s / 60:g} minutes" if cap_s % 60 == 0 else f"{cap_s:g} seconds"
    return ApiError(
        400, "invalid_request_error", "websocket_connection_limit_reached",
        f"Responses websocket connection limit reached ({span}). "
        "Create a new websocket connection to continue.",
        None,
    )  # fmt: skip


# --- limits (spec §7.3 `rate_limit_exceeded`) ------------------------------------------------------


def rate_limit_exceeded(message: str, retry_after_s: float) -> ApiError:
    return ApiError(429, "requests", "rate_limit_exceeded", message, None, retry_after_s)


def server_full(message: str, retry_after_s: float) -> ApiError:
    """503: the server as a whole is at a limit; another instance, or a later try, can serve."""
    return ApiError(503, "server_error", "server_error", message, None, retry_after_s)


def server_shutting_down() -> ApiError:
    """A create on a WebSocket while the server drains for shutdown (the socket then closes 1012)."""
    return ApiError(
        503, "server_error", "server_error",
        "The server is shutting down; reconnect to continue (the chain is kept if it was stored).",
        None, 1.0,
    )  # fmt: skip


def request_too_large(limit: int) -> ApiError:
    """An HTTP body over the configured size (the WebSocket counterpart is close 1009)."""
    return ApiError(
        413, "invalid_request_error", "request_too_large",
        f"The request body is larger than this server accepts ({limit} bytes).", None,
    )  # fmt: skip
