"""What each view of the inspector shows, gathered from the runtime and the store for one caller:
an admin sees every tenant, a tenant's key its own tenant only (another tenant's connection or
response is not found, as with the API)."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass

from tether.backends.base import CacheStats, EngineReach
from tether.server.auth import Caller
from tether.server.runtime import ConnectionView, Runtime
from tether.store.base import Relative

FAMILY_SHOWN = 200  # responses of a chain's tree on one page


def _visible(caller: Caller, view: ConnectionView) -> bool:
    return caller.admin or view.tenant == caller.tenant


def open_connections(runtime: Runtime, caller: Caller) -> list[ConnectionView]:
    """The caller's open WebSocket connections, the newest first."""
    views = (connection.view() for connection in list(runtime.connections))
    return sorted((v for v in views if _visible(caller, v)), key=lambda v: v.opened_at, reverse=True)


def closed_connections(runtime: Runtime, caller: Caller) -> list[ConnectionView]:
    """The caller's connections among the latest closed, the last closed first."""
    return [view for view in reversed(runtime.closed) if _visible(caller, view)]


def connection(runtime: Runtime, caller: Caller, connection_id: str) -> ConnectionView | None:
    return next((view for view in _every(runtime, caller) if view.id == connection_id), None)


def connection_of_turn(runtime: Runtime, caller: Caller, response_id: str) -> ConnectionView | None:
    """The connection whose timeline has the turn of `response_id`."""
    turns = ((view, record) for view in _every(runtime, caller) for record in view.timeline)
    return next((view for view, record in turns if record.response_id == response_id), None)


def _every(runtime: Runtime, caller: Caller) -> list[ConnectionView]:
    return [*open_connections(runtime, caller), *closed_connections(runtime, caller)]


@dataclass(frozen=True)
class EngineView:
    models: tuple[str, ...]
    engines: tuple[EngineReach, ...]
    cache: CacheStats
    store: str | None  # what is wrong with the store now; None: nothing
    running: int  # responses in flight in this process
    connections: int
    uptime_s: float
    pid: int


async def engine(runtime: Runtime) -> EngineView:
    responses = runtime.responses
    return EngineView(
        models=tuple(sorted(responses.served_models)),
        engines=await responses.backend.reach(),
        cache=responses.backend.cache_stats(),
        store=(await responses.readiness()).store,
        running=len(responses.running),
        connections=len(runtime.connections),
        uptime_s=time.time() - runtime.started_at,
        pid=os.getpid(),
    )


@dataclass(frozen=True)
class TreeRow:
    """One response of a chain's tree, in the order a person reads it: depth first, each fork a
    branch one level in, a chain without forks straight down at one level."""

    response: Relative
    level: int
    branch: bool  # the first of a fork's branches (or a later one): drawn as a branch
    selected: bool


def tree_rows(family: list[Relative], selected: str) -> list[TreeRow]:
    known = {relative.id for relative in family}
    children: defaultdict[str | None, list[Relative]] = defaultdict(list)
    for relative in family:
        parent = relative.previous_response_id
        children[parent if parent in known else None].append(relative)
    for siblings in children.values():
        siblings.sort(key=lambda r: (r.created_at, r.id))
    rows: list[TreeRow] = []
    stack = [(root, 0, False) for root in reversed(children[None])]
    while stack:  # no recursion: a chain may be thousands of turns long
        relative, level, branch = stack.pop()
        rows.append(TreeRow(relative, level, branch, relative.id == selected))
        below = children[relative.id]
        forked = len(below) > 1
        stack += [(child, level + forked, forked) for child in reversed(below)]
    return rows
