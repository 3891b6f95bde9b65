"""What the latest turns were, for the inspector: when each ended, how long it waited and took,
its first output, its tokens — prefilled against cached — and, for a continuation of a response
this process shaped, whether it found that response's cache and why not (as
`prompt_cache_diagnostics` would say, whether the client asked for them or not). A WebSocket
connection keeps its own latest `TIMELINE_TURNS`, and dies with them; the process keeps the
latest `HTTP_TURNS_KEPT` of HTTP, every tenant's, each with its tenant."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tether.protocol.prompt_cache import Diagnostics

TIMELINE_TURNS = 32  # per connection: ~5 KB of records at most
HTTP_TURNS_KEPT = 256  # per process


@dataclass(frozen=True, slots=True)
class TurnRecord:
    response_id: str
    previous_response_id: str | None
    lane: str | None  # its `stream_id`
    status: str
    ended_at: float  # Unix time
    queued_s: float  # waiting on the connection before it started
    duration_s: float  # from its start to its end
    first_output_s: float | None  # from its start; None without output (a warm-up, a failure)
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    diagnostics: Diagnostics | None  # against the response it continues; None: not compared
    stored: bool
    warm_up: bool  # `generate: false`: a prefill, no answer

    @property
    def prefilled_tokens(self) -> int:
        return self.input_tokens - self.cached_tokens


Timeline = deque[TurnRecord]


def new_timeline() -> Timeline:
    return deque(maxlen=TIMELINE_TURNS)


def new_http_turns() -> deque[tuple[str, TurnRecord]]:
    """The latest HTTP turns, each with its tenant."""
    return deque(maxlen=HTTP_TURNS_KEPT)
