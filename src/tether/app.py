"""Builds the ASGI app: settings → backend and store → the Responses resource → transports."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, WebSocketRoute

from tether.backends.base import Backend
from tether.backends.scripted import ScriptedBackend
from tether.backends.upstream import UpstreamBackend
from tether.config import Auth, Settings, Storage
from tether.core import sealing
from tether.core.metrics import Metrics
from tether.core.responses import Responses
from tether.core.stored_contexts import StoredContexts
from tether.inspector.pages import Inspector
from tether.protocol.errors import ApiError
from tether.server import http
from tether.server.admission import Admission, AdmissionControl
from tether.server.auth import BearerAuth, KeyRing
from tether.server.each_request import EachRequest
from tether.server.runtime import Runtime
from tether.server.websocket import WebSocketApi
from tether.store.base import Store
from tether.store.postgres import PostgresStore
from tether.store.sqlite import SqliteStore


async def load_backend(settings: Settings) -> Backend:
    if settings.upstream.urls:
        return await UpstreamBackend.connect(settings.upstream)
    if settings.models.model == "scripted":
        return ScriptedBackend(settings.scripted)
    # Imported here so that the scripted model runs without llama.cpp installed.
    from tether.backends.local import LocalBackend

    model_path = None if settings.models.model == "local" else Path(settings.models.model)
    return await asyncio.to_thread(LocalBackend.load, settings.local, model_path)


async def reasoning_seal(auth: Auth, store: Store) -> sealing.ReasoningSeal:
    """The operator's key, else the one kept in the store for every process that shares it."""
    if auth.reasoning_key is not None:
        return sealing.ReasoningSeal(sealing.key_from_secret(auth.reasoning_key.get_secret_value()))
    return sealing.ReasoningSeal(await store.secret("reasoning", sealing.new_key()))


async def open_store(storage: Storage) -> Store:
    kind, where = storage.location()
    if kind == "postgresql":
        return await PostgresStore(where, storage.db_max_connections).open()
    return await SqliteStore(Path(where)).open()


def build_app(settings: Settings, runtime: Runtime | None = None) -> Starlette:
    """The app; `runtime` is what its lifespan fills (the shutdown sequence reads it too)."""
    runtime = runtime or Runtime()
    keys = KeyRing(settings.auth.tenant_keys, settings.auth.admins())
    admission = Admission(settings.admission)
    api = http.HttpApi(runtime, settings.http)
    websocket = WebSocketApi(runtime, settings.websocket, admission)
    inspector = Inspector(runtime, keys, websocket)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        backend = await load_backend(settings)
        store = await open_store(settings.storage)
        served = frozenset({*backend.model_ids, *settings.models.model_aliases})
        contexts = StoredContexts(settings.storage.held_history_bytes)
        metrics = Metrics()
        metrics.watch_loop_lag(lambda: admission.lag.seconds)
        responses = Responses(
            backend, store, served, metrics, contexts, settings.storage.orphan_after_s,
            await reasoning_seal(settings.auth, store),
            diagnose_continuations=settings.models.cache_diagnostics,
            tool_namespaces=settings.models.tool_namespaces,
        )  # fmt: skip
        await responses.open()
        runtime.start(responses)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, keys.reload)  # rotate keys without a restart
        lag = asyncio.create_task(admission.lag.run(), name="loop-lag")
        try:
            yield
        finally:
            lag.cancel()
            loop.remove_signal_handler(signal.SIGHUP)
            # Running responses end `interrupted` and are stored before the store closes.
            await responses.aclose()
            await backend.aclose()
            await store.aclose()

    # §3.1: WebSocket mode shares the create path; an upgrade is a GET with Upgrade headers.
    v1 = [*api.routes(), WebSocketRoute("/responses", websocket.endpoint)]
    return Starlette(
        routes=[*api.open_routes(), *inspector.routes(), Mount("/v1", routes=v1)],
        lifespan=lifespan,
        middleware=[
            Middleware(EachRequest),
            Middleware(BearerAuth, keys=keys),
            Middleware(AdmissionControl, admission=admission),
        ],
        exception_handlers={
            ApiError: http.api_error,
            HTTPException: http.http_exception,
            Exception: http.unexpected,
        },
    )
