"""What each view of the inspector shows, gathered from the runtime and the store for one caller:
an admin sees every tenant, a tenant's key its own tenant only (another tenant's connection or
response is not found, as with the API)."""

from __future__ import annotations

import heapq
import os
import time
from collections import defaultdict
from dataclasses import dataclass

from tether.backends.base import CacheStats, EngineReach
from tether.core.timeline import TurnRecord
from tether.server.auth import Caller
from tether.server.runtime import Connected, ConnectionView, Runtime
from tether.store.base import Relative

FAMILY_SHOWN = 200  # responses of a chain's tree on one page
# Open connections on one page, the newest: a view of each is made every second, so a server
# holding thousands makes this many (the page says how many more there are).
CONNECTIONS_SHOWN = 100


@dataclass(frozen=True)
class Connections:
    shown: list[ConnectionView]  # the newest first
    more: int  # the caller's open connections not shown
    closed: list[ConnectionView]  # among the latest closed, the last closed first


def connections(runtime: Runtime, caller: Caller) -> Connections:
    """The caller's open WebSocket connections and its latest closed ones."""
    mine = _open(runtime, caller)
    newest = heapq.nlargest(CONNECTIONS_SHOWN, mine, key=lambda c: c.opened_at)
    return Connections([c.view() for c in newest], len(mine) - len(newest), _closed(runtime, caller))


def connection(runtime: Runtime, caller: Caller, connection_id: str) -> ConnectionView | None:
    found = next((c for c in _open(runtime, caller) if c.id == connection_id), None)
    if found is not None:
        return found.view()
    return next((view for view in _closed(runtime, caller) if view.id == connection_id), None)


def connection_of_turn(runtime: Runtime, caller: Caller, response_id: str) -> ConnectionView | None:
    """The connection whose timeline has the turn of `response_id`."""
    every = [*(c.view() for c in _open(runtime, caller)), *_closed(runtime, caller)]
    return next((view for view in every if any(r.response_id == response_id for r in view.timeline)), None)


def http_turns(runtime: Runtime, caller: Caller) -> list[tuple[str, TurnRecord]]:
    """The latest HTTP turns the caller may see, each with its tenant, the newest first."""
    turns = reversed(runtime.responses.http_turns)
    return [(tenant, record) for tenant, record in turns if caller.admin or tenant == caller.tenant]


def _open(runtime: Runtime, caller: Caller) -> list[Connected]:
    return [c for c in list(runtime.connections) if caller.admin or c.tenant == caller.tenant]


def _closed(runtime: Runtime, caller: Caller) -> list[ConnectionView]:
    """Among the latest closed, the last closed first."""
    return [view for view in reversed(runtime.closed) if caller.admin or view.tenant == caller.tenant]


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
        store=await responses.store_problem(),  # the engines are probed by `reach`, once
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
