"""Bearer-key authentication, as ASGI middleware around every route."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection, cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from tether.protocol import errors
from tether.server.rejections import reject
from tether.store.base import DEFAULT_TENANT

log = logging.getLogger(__name__)
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# The inspector decides for itself (its login page is open; it takes its key from a cookie too).
INSPECTOR = "/inspector"
INSPECTOR_COOKIE = "tether-inspector"
PLAYGROUND = f"{INSPECTOR}/playground"  # the WebSocket API, for the inspector's page
ANONYMOUS = "anonymous"  # the key label of every caller when no keys are configured


@dataclass(frozen=True)
class Caller:
    tenant: str
    key: str  # the key's label, never the key
    admin: bool = False  # the inspector shows it every tenant


# With no keys, anyone may do anything: the inspector too shows everything.
UNAUTHENTICATED = Caller(DEFAULT_TENANT, ANONYMOUS, admin=True)


class KeyRing:
    """The configured keys and whose they are; SIGHUP re-reads them while the server runs.

    A reload that fails (a bad keys file) keeps the keys in use, and so does one that would leave
    a server that started with keys with none: a typo must not switch authentication off.
    """

    def __init__(self, load: Callable[[], Mapping[str, str]], admins: frozenset[str] = frozenset()) -> None:
        """`load`: every key and its tenant; `admins`: those of them that are admin keys."""
        self._load = load
        self._admins = admins
        self.entries = _entries(load(), admins)

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    def reload(self) -> None:
        try:
            entries = _entries(self._load(), self._admins)
        except ValueError as exc:
            log.error("keys not reloaded, the old ones stay in use: %s", exc)
            return
        if self.entries and not entries:
            log.error("keys not reloaded: the new configuration has none, which would open the server")
            return
        self.entries = entries
        log.warning(
            "keys reloaded: %d keys for %d tenants", len(entries), len({c.tenant for _, c in entries})
        )

    def caller(self, token: bytes) -> Caller | None:
        # Every key is compared, in constant time, so timing reveals neither a key nor which matched.
        found = None
        for key, caller in self.entries:
            if hmac.compare_digest(token, key):
                found = caller
        return found


def _entries(keys: Mapping[str, str], admins: frozenset[str]) -> list[tuple[bytes, Caller]]:
    # A key's label names it in limits and logs: its tenant and its place in the configuration.
    return [
        (key.encode(), Caller(tenant, f"{'admin' if key in admins else tenant}#{n}", key in admins))
        for n, (key, tenant) in enumerate(keys.items())
    ]


class BearerAuth:
    """Finds the caller of every request from its bearer key (spec §3.3, §7.3).

    A request without a configured key gets 401 `invalid_api_key`; a WebSocket upgrade is refused
    before it is accepted, with the same HTTP answer. With no keys configured every request belongs
    to the default tenant. The `Caller` (tenant and key label) goes on in the scope's state, where
    `caller_of` finds it.
    """

    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        inspector = scope["path"].startswith(INSPECTOR)
        caller = self._caller(Headers(scope=scope), inspector) if self.keys.enabled else UNAUTHENTICATED
        if caller is not None or scope["path"] in OPEN_PATHS or inspector:
            scope.setdefault("state", {})["caller"] = caller
            await self.app(scope, receive, send)
            return
        await reject(scope, send, errors.invalid_api_key(), (b"www-authenticate", b"Bearer"))

    def _caller(self, headers: Headers, inspector: bool) -> Caller | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            # A browser can neither set a header on a link nor on a WebSocket: the inspector's
            # login keeps the key in a cookie only the inspector's paths are sent.
            cookie = cookie_parser(headers.get("cookie", "")).get(INSPECTOR_COOKIE)
            if not inspector or not cookie:
                return None
            token = cookie
        return self.keys.caller(token.strip().encode())


def caller_of(scope: Scope) -> Caller:
    caller: Caller = scope["state"]["caller"]
    return caller


def inspector_caller(scope: Scope) -> Caller | None:
    """Who calls the inspector: None without a key the server knows (its pages then refuse)."""
    caller: Caller | None = scope["state"]["caller"]
    return caller


def tenant_of(connection: HTTPConnection) -> str:
    return caller_of(connection.scope).tenant
