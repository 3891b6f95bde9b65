"""Admission: how much a key may ask of the server, checked before any work is accepted.

    requests per second, per key        token bucket; over it: 429 `rate_limit_exceeded` with
                                        `retry-after` (HTTP requests and WebSocket creates alike)
    open WebSocket connections, per key 429 before the upgrade
    open WebSocket connections, total   503 before the upgrade (another instance can serve)
    the event loop's lag (overload)     503 for every new request, upgrade and create, while the
                                        process runs late (`loop_lag`)

A key is named by the label authentication gives it (`auth.Caller.key`, never the key itself).
Without keys every caller shares one label, so the per-key limits bound the whole server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from tether.config import AdmissionLimits
from tether.protocol import errors
from tether.protocol.errors import ApiError
from tether.server.auth import PLAYGROUND
from tether.server.loop_lag import LoopLag
from tether.server.rejections import reject

OVERLOAD_RETRY_S = 1.0  # the `retry-after` of an overload refusal: about the window the lag is measured over


@dataclass
class TokenBucket:
    """`rate` tokens a second, holding at most `burst`; a request takes one."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """0 when a token was taken; else the seconds until one will be there."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass
class Admission:
    limits: AdmissionLimits
    clock: Callable[[], float] = time.monotonic
    lag: LoopLag = field(default_factory=LoopLag)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _connections: dict[str, int] = field(default_factory=dict)

    def request(self, key: str) -> None:
        """One request by `key`; raises 503 when the process is overloaded, 429 when the key is
        over its rate."""
        self._check_load()
        rate = self.limits.rate_limit_rps
        if rate is None:
            return
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            burst = self.limits.rate_limit_burst or max(1.0, rate)  # unset: one second's worth
            bucket = self._buckets[key] = TokenBucket(rate, burst, burst, now)
        wait = bucket.take(now)
        if wait > 0:
            raise errors.rate_limit_exceeded(
                f"Rate limit reached: {rate:g} requests per second for this key. Try again in {wait:.2f} s.",
                wait,
            )

    def open_connection(self, key: str) -> None:
        """Takes one of the open-connection places, or raises; `close_connection` gives it back."""
        self._check_load()
        open_for_key = self._connections.get(key, 0)
        total, per_key = self.limits.ws_max_connections, self.limits.ws_max_connections_per_key
        if total is not None and sum(self._connections.values()) >= total:
            raise errors.server_full(f"The server holds its maximum of {total} WebSocket connections.", 1.0)
        if per_key is not None and open_for_key >= per_key:
            raise errors.rate_limit_exceeded(
                f"This key already has {open_for_key} open WebSocket connections, its maximum. "
                "Close one first.",
                1.0,
            )
        self._connections[key] = open_for_key + 1

    def _check_load(self) -> None:
        limit_ms, lag_s = self.limits.max_loop_lag_ms, self.lag.seconds
        if limit_ms is not None and lag_s * 1000 > limit_ms:
            raise errors.server_full(
                f"The server is overloaded (its event loop runs {lag_s * 1000:.0f} ms late). "
                "Try again shortly.",
                OVERLOAD_RETRY_S,
            )

    def close_connection(self, key: str) -> None:
        self._connections[key] -= 1
        if not self._connections[key]:
            del self._connections[key]


class AdmissionControl:
    """ASGI middleware (after authentication): every `/v1` request and WebSocket upgrade (the
    inspector's playground's too) is admitted by the caller's key or refused with the limit's
    error."""

    def __init__(self, app: ASGIApp, admission: Admission) -> None:
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = scope.get("state", {}).get("caller")
        if (
            caller is None
            or scope["type"] not in ("http", "websocket")
            or not (scope["path"].startswith("/v1/") or scope["path"] == PLAYGROUND)
        ):
            await self.app(scope, receive, send)  # lifespan, and the open paths
            return
        try:
            if scope["type"] == "http":
                self.admission.request(caller.key)
            else:
                self.admission.open_connection(caller.key)
        except ApiError as error:
            await reject(scope, send, error)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "websocket":
                self.admission.close_connection(caller.key)
