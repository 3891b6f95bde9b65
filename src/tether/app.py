"""Builds the ASGI app: settings → backend and store → the Responses resource → transports."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route, WebSocketRoute

from tether.backends.base import Backend
from tether.backends.scripted import LatencyProfile, ScriptedBackend
from tether.backends.upstream import Timeouts, UpstreamBackend
from tether.config import Settings
from tether.core.metrics import Metrics
from tether.core.responses import Responses
from tether.protocol.errors import ApiError
from tether.server import http, websocket
from tether.server.admission import Admission, AdmissionControl
from tether.server.auth import BearerAuth, KeyRing, RequestIds
from tether.store.sqlite import SqliteStore


async def load_backend(settings: Settings) -> Backend:
    if settings.upstreams:
        timeouts = Timeouts(settings.upstream_connect_timeout_s, settings.upstream_read_timeout_s)
        return await UpstreamBackend.connect(settings.upstream_routes(), settings.upstream_api_key, timeouts)
    if settings.model == "scripted":
        latency = LatencyProfile(
            prefill_us=settings.scripted_prefill_us,
            decode_us=settings.scripted_decode_us,
            overhead_ms=settings.scripted_overhead_ms,
        )
        return ScriptedBackend(latency)
    # Imported here so that the scripted model runs without llama.cpp installed.
    from tether.backends.local import LocalBackend

    model_path = None if settings.model == "local" else Path(settings.model)
    return await asyncio.to_thread(
        LocalBackend.load,
        model_path,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        kv_cache_bytes=settings.kv_cache_bytes,
    )


def build_app(settings: Settings) -> Starlette:
    keys = KeyRing(settings.tenant_keys)
    admission = Admission(
        requests_per_s=settings.rate_limit_rps,
        burst=settings.rate_limit_burst,
        max_connections=settings.ws_max_connections,
        max_connections_per_key=settings.ws_max_connections_per_key,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        backend = await load_backend(settings)
        store = await SqliteStore(settings.db).open()
        served = frozenset({*backend.model_ids, *settings.model_aliases})
        app.state.responses = Responses(backend, store, served, Metrics())
        app.state.settings = settings
        app.state.admission = admission
        app.state.ws_connections = set()  # the open WebSocket connections, drained at shutdown
        app.state.started_at = time.time()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, keys.reload)  # rotate keys without a restart
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            # Running responses end `interrupted` and are stored before the store closes.
            await app.state.responses.aclose()
            await backend.aclose()
            await store.aclose()

    routes = [
        Route("/healthz", http.healthz, methods=["GET"]),
        Route("/metrics", http.metrics, methods=["GET"]),
        # §3.1: WebSocket mode shares the create path; an upgrade is a GET with Upgrade headers.
        Mount("/v1", routes=[*http.API_ROUTES, WebSocketRoute("/responses", websocket.endpoint)]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(RequestIds),
            Middleware(BearerAuth, keys=keys),
            Middleware(AdmissionControl, admission=admission),
        ],
        exception_handlers={
            ApiError: http.api_error,
            HTTPException: http.http_exception,
            Exception: http.unexpected,
        },
    )
