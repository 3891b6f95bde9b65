"""The Response object (spec §6.1) and its usage block (§6.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tether.protocol.prompt_cache import Ttl
from tether.protocol.request import CreateRequest
from tether.protocol.tools import tools_to_wire


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    cache_write_tokens: int = 0  # input tokens this request added to the cache

    def to_wire(self, ttl: Ttl = "30m") -> dict[str, Any]:
        """`ttl`: what the request's writes were kept for at least (`prompt_cache_options.ttl`)."""
        writes = {"ttl_30m_tokens": 0, "ttl_12h_tokens": 0, f"ttl_{ttl}_tokens": self.cache_write_tokens}
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {
                "cached_tokens": self.cached_tokens,
                "cache_write_tokens": self.cache_write_tokens,
                "cache_write_tokens_details": writes,
            },
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


# Why a response ended `incomplete` (§7.5 `incomplete_details.reason`), by the finish reason of a
# model that stopped on its own; a finish reason not listed here is a normal end.
_INCOMPLETE_REASONS = {
    "length": "max_output_tokens",
    "content_filter": "content_filter",
    "steered": "steered",  # stopped at a safe boundary for a steer (§8.6)
}


def incomplete_reason(finish_reason: str) -> str | None:
    return _INCOMPLETE_REASONS.get(finish_reason)


def response_object(
    request: CreateRequest,
    *,
    response_id: str,
    model: str,
    created_at: int,
) -> dict[str, Any]:
    """A Response with every key of §6.1, as sent in `response.created`: `queued` when it runs in
    the background (§6.2), else `in_progress`.

    Later states change `status`, `output`, `usage`, `error`, `incomplete_details` and
    `completed_at` on a copy (see `events.ResponseEvents`).
    """
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "completed_at": None,
        "status": "queued" if request.background else "in_progress",
        "background": request.background,
        "error": None,
        "incomplete_details": None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": request.max_tool_calls,
        "model": model,
        "output": [],
        "parallel_tool_calls": request.parallel_tool_calls,
        "previous_response_id": request.previous_response_id,
        "prompt_cache_key": request.prompt_cache_key,
        "prompt_cache_options": request.prompt_cache.to_wire(),
        "prompt_cache_retention": request.prompt_cache_retention,
        "reasoning": request.reasoning,
        "safety_identifier": request.safety_identifier,
        "service_tier": request.service_tier,
        "store": request.store,
        "temperature": request.temperature,
        "text": request.text,
        "tool_choice": request.tool_choice_echo,
        "tools": tools_to_wire(request.tools),
        "top_logprobs": request.top_logprobs,
        "top_p": request.top_p,
        "truncation": request.truncation,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "usage": None,
        "user": request.user,
        "metadata": request.metadata,
    }
