"""The HTTP surface (spec §10): each route is parse → core → render.

Client errors arrive as `ApiError` and leave through `api_error`; anything else is logged and
answered with the generic 500 of the catalogue. Once SSE headers are out, failures go in-band
as `response.failed` (the turn does that), never as an HTTP status.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tether.config import HttpLimits
from tether.core import turn
from tether.core.lifecycle import Outcome
from tether.core.responses import Responses
from tether.core.running import Running
from tether.protocol import errors, resources
from tether.protocol.errors import ApiError
from tether.protocol.request import parse_compact, parse_create
from tether.protocol.resources import Order
from tether.server import sse
from tether.server.auth import tenant_of
from tether.server.runtime import Runtime

INPUT_ITEMS_MAX_LIMIT = 100  # §9
INPUT_ITEMS_DEFAULT_LIMIT = 20


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class HttpApi:
    """The routes under `/v1` (and `/healthz`, `/metrics`), each parse → core → render."""

    def __init__(self, runtime: Runtime, limits: HttpLimits) -> None:
        self.runtime = runtime
        self.limits = limits

    @property
    def responses(self) -> Responses:
        return self.runtime.responses

    def routes(self) -> list[Route]:
        return [
            Route("/responses", self.create, methods=["POST"]),
            Route("/responses/input_tokens", self.input_tokens, methods=["POST"]),
            Route("/responses/compact", self.compact, methods=["POST"]),
            Route("/responses/{response_id}", self.retrieve, methods=["GET"]),
            Route("/responses/{response_id}", self.delete, methods=["DELETE"]),
            Route("/responses/{response_id}/cancel", self.cancel, methods=["POST"]),
            Route("/responses/{response_id}/input_items", self.input_items, methods=["GET"]),
            Route("/models", self.models, methods=["GET"]),
        ]

    def open_routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

    async def read_json(self, request: Request) -> Any:
        raw = await _read_body(request, self.limits.max_body_bytes)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise errors.invalid_request(f"The request body is not valid JSON: {exc}.") from None

    # --- routes -----------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        create_request = parse_create(await self.read_json(request), "http")
        running = await self.responses.start(create_request, tenant_of(request))
        if create_request.stream:
            return sse.stream(running.log.follow(), on_close=lambda: _interrupt(running))
        if create_request.background:
            return JsonResponse(running.snapshot())
        outcome = await _settled_unless_disconnected(request, running)
        if outcome.error is not None:
            # §10.2: a non-streaming response that fails during generation is a 500, saying why.
            return api_error(request, outcome.error)
        return JsonResponse(running.snapshot())

    async def retrieve(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        if _bool_param(request, "stream"):
            after = _int_param(request, "starting_after", default=-1)
            return sse.stream(await self.responses.replay(response_id, tenant_of(request), after))
        return JsonResponse(await self.responses.get(response_id, tenant_of(request)))

    async def delete(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        await self.responses.delete(response_id, tenant_of(request))
        return JsonResponse(resources.deleted(response_id))

    async def cancel(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        return JsonResponse(await self.responses.cancel(response_id, tenant_of(request)))

    async def input_items(self, request: Request) -> Response:
        limit = _int_param(request, "limit", default=INPUT_ITEMS_DEFAULT_LIMIT)
        if not 1 <= limit <= INPUT_ITEMS_MAX_LIMIT:
            raise errors.invalid_request(
                f"Invalid 'limit': expected 1 to {INPUT_ITEMS_MAX_LIMIT}, got {limit}.", "limit"
            )
        order = request.query_params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise errors.invalid_request(f"Invalid 'order': expected asc or desc, got {order!r}.", "order")
        page = await self.responses.input_items(
            request.path_params["response_id"],
            tenant_of(request),
            after=request.query_params.get("after"),
            limit=limit,
            order=cast(Order, order),
        )
        return JsonResponse(resources.input_items_list(page.items, page.has_more))

    async def input_tokens(self, request: Request) -> Response:
        create_request = parse_create(await self.read_json(request), "http")
        count = await self.responses.count_input_tokens(create_request, tenant_of(request))
        return JsonResponse(resources.input_tokens(count))

    async def compact(self, request: Request) -> Response:
        compact_request = parse_compact(await self.read_json(request))
        return JsonResponse(await self.responses.compact(compact_request, tenant_of(request)))

    async def models(self, request: Request) -> Response:
        models = [(name, self.responses.model_details(name)) for name in sorted(self.responses.served_models)]
        return JsonResponse(resources.model_list(models, int(self.runtime.started_at)))

    async def healthz(self, request: Request) -> Response:
        return JsonResponse(resources.health(self.responses.backend.model_ids))

    async def readyz(self, request: Request) -> Response:
        """Whether to send this process work: while its store and its model answer (a process
        shutting down has stopped listening already). Open without a key, so it says what
        failed, never why (the log does)."""
        found = await self.responses.readiness()
        body = resources.readiness(store=found.store, backend=found.backend)
        return JsonResponse(body, status_code=200 if found.ready else 503)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.responses.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it is known to pass `limit` (before reading it, when its
    length is declared; as soon as it passes, when it is chunked)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise errors.request_too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.request_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _interrupt(running: Running) -> None:
    """D9: a client that leaves a non-background response cancels it."""
    if not running.request.background and not running.lifecycle.ended:
        running.cancel.cancel(turn.INTERRUPTED)


async def _settled_unless_disconnected(request: Request, running: Running) -> Outcome:
    settled = asyncio.ensure_future(running.lifecycle.settled())
    disconnected = asyncio.ensure_future(_disconnect(request))
    await asyncio.wait({settled, disconnected}, return_when=asyncio.FIRST_COMPLETED)
    disconnected.cancel()
    if not settled.done():
        _interrupt(running)
    return await settled


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _bool_param(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("true", "1")


def _int_param(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise errors.invalid_request(f"Invalid '{name}': expected an integer.", name) from None


# --- errors ---------------------------------------------------------------------------------------


def api_error(request: Request, exc: Exception) -> Response:
    error = exc if isinstance(exc, ApiError) else errors.server_error()
    return JsonResponse(error.http_body(), status_code=error.status, headers=error.http_headers())


def http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = errors.method_not_allowed(request.method, request.url.path)
    else:
        error = errors.not_found_route(request.url.path)
    return api_error(request, error)


def unexpected(request: Request, exc: Exception) -> Response:
    # Starlette re-raises after this answer, so the server log gets the traceback.
    return api_error(request, errors.server_error())
