"""`prompt_cache_options` (the SDK's `PromptCacheOptions`): how a request asks to use the cache,
checked and echoed on the Response as the options applied.

- `mode`: `implicit` (the default: everything a request prefills is kept for reuse) or `explicit`
  (only the prefix up to its last message with a part marked `prompt_cache_breakpoint`, in which
  the prefixes of earlier marks nest; none marked, nothing is kept);
- `ttl`: the least time an idle entry written by the request is kept (`30m`, `12h`);
- `prewarm`: prepare the cache without generating (it makes the request a warm-up, D2);
- `comparison_response_id`: asks for `prompt_cache_diagnostics` against that response.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tether.protocol.errors import invalid_request

Mode = Literal["implicit", "explicit"]
Ttl = Literal["30m", "12h"]
TTL_SECONDS: dict[Ttl, float] = {"30m": 30 * 60.0, "12h": 12 * 3600.0}

_PARAM = "prompt_cache_options"
_FIELDS = frozenset({"mode", "ttl", "prewarm", "comparison_response_id"})


@dataclass(frozen=True)
class PromptCache:
    mode: Mode = "implicit"
    ttl: Ttl = "30m"
    prewarm: bool = False
    comparison_response_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The options applied, as the Response shows them."""
        return {"mode": self.mode, "ttl": self.ttl, "comparison_response_id": self.comparison_response_id}


def parse_prompt_cache(value: Mapping[str, Any] | None) -> PromptCache:
    if value is None:
        return PromptCache()
    unknown = sorted(set(value) - _FIELDS)
    if unknown:
        raise invalid_request(f"Unknown parameter: '{_PARAM}.{unknown[0]}'.", _PARAM)
    mode = value.get("mode", "implicit")
    if mode not in ("implicit", "explicit"):
        raise invalid_request(
            f"Invalid '{_PARAM}.mode': {mode!r}; expected 'implicit' or 'explicit'.", _PARAM
        )
    ttl = value.get("ttl", "30m")
    if ttl not in ("30m", "12h"):
        raise invalid_request(f"Invalid '{_PARAM}.ttl': {ttl!r}; expected '30m' or '12h'.", _PARAM)
    prewarm = value.get("prewarm", False)
    if not isinstance(prewarm, bool):
        raise invalid_request(f"Invalid '{_PARAM}.prewarm': expected a boolean.", _PARAM)
    comparison = value.get("comparison_response_id")
    if comparison is not None and not isinstance(comparison, str):
        raise invalid_request(f"Invalid '{_PARAM}.comparison_response_id': expected a string.", _PARAM)
    return PromptCache(mode, ttl, prewarm, comparison)


@dataclass(frozen=True)
class Diagnostics:
    """`prompt_cache_diagnostics` (core/cache_diagnostics.py says when each applies)."""

    type: Literal["cache_hit", "cache_miss", "comparison_response_not_found", "unavailable"]
    reason: str | None = None  # a miss's
    reusable: int = 0  # a miss's: tokens of the compared response this request reused
    missed: int = 0  # a miss's: tokens it prefilled again

    def to_wire(self) -> dict[str, Any]:
        if self.type != "cache_miss":
            return {"type": self.type}
        return {"type": self.type, "reason": self.reason, "comparison_reusable_tokens": self.reusable,
                "cache_missed_tokens": self.missed}  # fmt: skip
