"""The inspector's routes: its pages, the fragments each page re-reads every second (`live/…`),
its login, and the playground's WebSocket.

Who may look: with keys configured, a key the server knows — sent as a bearer header, or kept
by the login page in a cookie (HttpOnly, SameSite=Strict, sent to `/inspector` paths only: a
browser can set a header neither on a link nor on a WebSocket). An admin key sees every tenant
and the engine; a tenant's key its own tenant's connections and responses. Without a key, a page
sends the browser to the login page, a fragment answers 401, the playground's WebSocket is
refused before it opens.

Each process shows its own state: under `--workers`, a page shows the worker that answered it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.websockets import WebSocket

from tether.core.timeline import TurnRecord
from tether.inspector import views
from tether.protocol.errors import ApiError
from tether.protocol.shown import shown_item, shown_response
from tether.server.auth import INSPECTOR, INSPECTOR_COOKIE, PLAYGROUND, Caller, KeyRing, inspector_caller
from tether.server.runtime import Runtime
from tether.server.websocket import WebSocketApi

HERE = Path(__file__).parent
ITEMS_SHOWN = 100  # of a response's input, on its page
LOGIN_BODY_BYTES = 4096  # a login form: a key and where to go next


class Inspector:
    def __init__(self, runtime: Runtime, keys: KeyRing, websocket: WebSocketApi) -> None:
        self.runtime = runtime
        self.keys = keys
        self.websocket = websocket
        self.templates = Jinja2Templates(directory=HERE / "templates")
        self.templates.env.filters.update(
            duration=_duration, size=_size, clock=_clock, short=_short, newest_first=_newest_first
        )

    def routes(self) -> list[BaseRoute]:
        page = functools.partial(_keyed, refuse=_to_login)
        live = functools.partial(_keyed, refuse=_unauthorized)
        return [
            Route(INSPECTOR, page(self.index)),
            Route(f"{INSPECTOR}/login", self.login_page, methods=["GET"]),
            Route(f"{INSPECTOR}/login", self.login, methods=["POST"]),
            Route(f"{INSPECTOR}/logout", self.logout, methods=["POST"]),
            Route(f"{INSPECTOR}/connections/{{connection_id}}", page(self.connection_page)),
            Route(f"{INSPECTOR}/responses/{{response_id}}", page(self.response_page)),
            Route(f"{INSPECTOR}/turns/{{response_id}}", page(self.turn)),
            Route(f"{INSPECTOR}/live/connections", live(self.live_connections)),
            Route(f"{INSPECTOR}/live/connections/{{connection_id}}", live(self.live_connection)),
            Route(f"{INSPECTOR}/live/http", live(self.live_http)),
            Route(f"{INSPECTOR}/live/engine", live(self.live_engine)),
            WebSocketRoute(PLAYGROUND, self.playground),
            Mount(f"{INSPECTOR}/static", StaticFiles(directory=HERE / "static")),
        ]

    # --- pages ------------------------------------------------------------------------------------

    async def index(self, request: Request, caller: Caller) -> Response:
        models = sorted(self.runtime.responses.served_models)
        return self._page(
            request, "index.html", caller, models=models, connections=views.connections(self.runtime, caller),
            turns=views.http_turns(self.runtime, caller), engine=await self._engine(caller),
        )  # fmt: skip

    async def connection_page(self, request: Request, caller: Caller) -> Response:
        view = views.connection(self.runtime, caller, request.path_params["connection_id"])
        if view is None:
            return self._page(request, "missing.html", caller, status_code=404, what="connection")
        return self._page(request, "connection.html", caller, connection=view)

    async def response_page(self, request: Request, caller: Caller) -> Response:
        response_id = request.path_params["response_id"]
        # An admin reads any tenant's, named by the link it followed; a tenant only its own.
        tenant = request.query_params.get("tenant", caller.tenant) if caller.admin else caller.tenant
        responses = self.runtime.responses
        try:
            response = shown_response(await responses.get(response_id, tenant))
            page = await responses.input_items(
                response_id, tenant, after=None, limit=ITEMS_SHOWN, order="asc"
            )
        except ApiError:
            return self._page(request, "missing.html", caller, status_code=404, what="stored response")
        family = await responses.store.family(response_id, tenant, views.FAMILY_SHOWN)
        return self._page(
            request, "response.html", caller, response=response, tenant=tenant,
            inputs=[shown_item(item) for item in page.items], more_inputs=page.has_more,
            tree=views.tree_rows(family, response_id), tree_full=len(family) < views.FAMILY_SHOWN,
        )  # fmt: skip

    async def turn(self, request: Request, caller: Caller) -> Response:
        """Where a response of a WebSocket turn is: its connection's timeline."""
        response_id = request.path_params["response_id"]
        view = views.connection_of_turn(self.runtime, caller, response_id)
        if view is None:
            return self._page(request, "missing.html", caller, status_code=404, what="turn")
        return RedirectResponse(f"{INSPECTOR}/connections/{view.id}#{response_id}", 303)

    # --- fragments, re-read every second ----------------------------------------------------------

    async def live_connections(self, request: Request, caller: Caller) -> Response:
        connections = views.connections(self.runtime, caller)
        return self._fragment(request, "live_connections.html", caller, connections=connections)

    async def live_http(self, request: Request, caller: Caller) -> Response:
        return self._fragment(request, "live_http.html", caller, turns=views.http_turns(self.runtime, caller))

    async def live_connection(self, request: Request, caller: Caller) -> Response:
        view = views.connection(self.runtime, caller, request.path_params["connection_id"])
        if view is None:
            return PlainTextResponse("no such connection", 404)
        return self._fragment(request, "live_connection.html", caller, connection=view)

    async def live_engine(self, request: Request, caller: Caller) -> Response:
        return self._fragment(request, "live_engine.html", caller, engine=await self._engine(caller))

    # --- login ------------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        if not self.keys.enabled:
            return RedirectResponse(INSPECTOR, 303)
        return self.templates.TemplateResponse(
            request, "login.html", {"next": _next(request.query_params.get("next")), "failed": False}
        )

    async def login(self, request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > LOGIN_BODY_BYTES:
                return PlainTextResponse("too large", 413)
        form = parse_qs(body.decode("utf-8", "replace"))
        key, where = form.get("key", [""])[0].strip(), _next(form.get("next", [None])[0])
        if self.keys.caller(key.encode()) is None:
            context = {"next": where, "failed": True}
            return self.templates.TemplateResponse(request, "login.html", context, status_code=401)
        response = RedirectResponse(where, 303)
        response.set_cookie(
            INSPECTOR_COOKIE, key, path=INSPECTOR, httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse(f"{INSPECTOR}/login", 303)
        response.delete_cookie(INSPECTOR_COOKIE, path=INSPECTOR)
        return response

    # --- the playground ---------------------------------------------------------------------------

    async def playground(self, websocket: WebSocket) -> None:
        """The WebSocket API itself, for the playground's page: the same route's endpoint, its
        caller found by the cookie. Only a page of this server may open it (its `Origin`)."""
        origin = websocket.headers.get("origin", "")
        same_site = origin.split("://", 1)[-1] == websocket.headers.get("host")
        if inspector_caller(websocket.scope) is None or not same_site:
            await websocket.send_denial_response(_unauthorized(websocket))
            return
        await self.websocket.endpoint(websocket)

    # --- helpers ----------------------------------------------------------------------------------

    async def _engine(self, caller: Caller) -> views.EngineView | None:
        """The engine serves every tenant: admin keys only see it."""
        return await views.engine(self.runtime) if caller.admin else None

    def _page(
        self, request: Request, name: str, caller: Caller, status_code: int = 200, **context: Any
    ) -> Response:
        context.update(caller=caller, keys=self.keys.enabled, now=time.time())
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    def _fragment(self, request: Request, name: str, caller: Caller, **context: Any) -> Response:
        response = self._page(request, name, caller, **context)
        response.headers["cache-control"] = "no-store"
        return response


def _keyed(
    endpoint: Callable[[Request, Caller], Awaitable[Response]], refuse: Callable[[Request], Response]
) -> Callable[[Request], Awaitable[Response]]:
    """`endpoint` for a caller with a key the server knows; anyone else is `refuse`d."""

    async def keyed(request: Request) -> Response:
        caller = inspector_caller(request.scope)
        return refuse(request) if caller is None else await endpoint(request, caller)

    return keyed


def _to_login(request: Request) -> Response:
    """A page's refusal: the login page, which comes back here."""
    return RedirectResponse(f"{INSPECTOR}/login?next={quote(request.url.path)}", 303)


def _unauthorized(_: HTTPConnection) -> Response:
    """A fragment's refusal (the page that reads it goes to the login), and the playground's."""
    return PlainTextResponse("The inspector needs a key: log in at /inspector/login.", 401)


def _next(where: str | None) -> str:
    """Where to go after logging in: a page of the inspector, never another site."""
    return where if where and where.startswith(INSPECTOR) and "//" not in where else INSPECTOR


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, second = divmod(int(seconds), 60)
    return f"{minutes // 60} h {minutes % 60} m" if minutes >= 60 else f"{minutes} m {second} s"


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB"):
        if count < 1024:
            return f"{count} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return f"{count:.1f} GB"


def _clock(unix: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(unix))


def _newest_first(timeline: Iterable[TurnRecord], tenant: str) -> list[tuple[str, TurnRecord]]:
    """A connection's timeline as the table of turns shows them (`templates/turns.html`)."""
    return [(tenant, record) for record in reversed(list(timeline))]


def _short(response_id: str) -> str:
    """An id as a person tells them apart: its kind (`resp_`) and last characters."""
    kind, _, rest = response_id.rpartition("_")
    return response_id if len(rest) <= 10 else f"{kind}_…{rest[-8:]}"
