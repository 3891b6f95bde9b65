"""The error catalogue (spec §7).

    ApiError                 the client's fault, or a condition the client must be told about;
                             one value renders as an HTTP body, a flat SSE event or a WS event

Anything else raised inside Tether is our bug or a dependency's failure: the transports log it and
show only the generic `server_error` from this catalogue, never the exception's text.
"""

from __future__ import annotations

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

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def payload(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}

    def http_body(self) -> dict[str, Any]:
        """The body of a non-2xx HTTP answer (spec §7.1)."""
        return {"error": self.payload()}

    def sse_event(self, sequence_number: int) -> dict[str, Any]:
        """The flat SSE `error` event: a nested `error` key would make the SDKs raise (§7.1)."""
        return {
            "type": "error",
            "code": self.code,
            "message": self.message,
            "param": self.param,
            "sequence_number": sequence_number,
        }

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


def backend_unavailable() -> ApiError:
    """503 before a response exists: the SDKs retry it, which is right for a restarting engine."""
    return ApiError(
        503, "server_error", "server_error", "The model backend is not available right now.", None
    )


def backend_failed() -> ApiError:
    """The `error` of a Response that failed during generation (§7.4: `server_error`)."""
    return ApiError(500, "server_error", "server_error", "The model backend stopped responding.", None)


def context_overflow(limit: int, needed: int) -> ApiError:
    return invalid_request(f"The input needs {needed} tokens but the model's context holds {limit}.", "input")
