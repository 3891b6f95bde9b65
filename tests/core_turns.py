"""Turns driven through core's `Responses` in process, with a real backend and a real SQLite
store: for properties of the turn path that no socket shows, such as how often a turn's prompt
is rendered."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tether.backends.base import Backend
from tether.core.metrics import Metrics
from tether.core.responses import Responses
from tether.core.sealing import ReasoningSeal, new_key
from tether.core.stored_contexts import StoredContexts
from tether.protocol.request import parse_create
from tether.store.sqlite import SqliteStore


async def turns(backend: Backend, db: Path, *bodies: dict[str, Any]) -> list[dict[str, Any]]:
    """Each body as an HTTP create, one after the other, `previous_response_id` "{last}" naming
    the previous turn; the final Response of each."""
    store = await SqliteStore(db).open()
    responses = Responses(
        backend,
        store,
        frozenset(backend.model_ids),
        Metrics(),
        StoredContexts(2**20),
        10.0,
        ReasoningSeal(new_key()),
    )
    finals: list[dict[str, Any]] = []
    try:
        for body in bodies:
            if body.get("previous_response_id") == "{last}":
                body = {**body, "previous_response_id": finals[-1]["id"]}
            request = parse_create({"model": backend.model_ids[0], **body}, "http")
            running = await responses.start(request, tenant="default")
            assert running.task is not None
            await running.task
            finals.append(running.snapshot())
    finally:
        await responses.aclose()
        await store.aclose()
    return finals


def run_turns(backend: Backend, db: Path, *bodies: dict[str, Any]) -> list[dict[str, Any]]:
    return asyncio.run(turns(backend, db, *bodies))
