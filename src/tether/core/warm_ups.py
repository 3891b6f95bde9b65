"""Warm-ups (`generate: false`, D2) are answered at once; their prefill runs after the answer.

Codex waits for a warm-up's `response.completed` only as long as its WebSocket connect timeout
(5 to 15 s). The local model prefills Codex's ~5,700-token prefix in 20 s to 2 minutes (110 s on
the benchmark machine, docs/benchmarks.md), so a warm-up that answered only after its prefill
made Codex give up, open a new socket and send everything again.

So the answer goes first and the prefill runs on. A turn that continues a warm-up waits for its
prefill before it uses the backend (the engine then holds the prefix), and if the prefill failed,
that turn fails saying so: the failure is kept until asked for (the most recent `FAILURES_KEPT`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tether.backends.base import BackendError, Cancellation
from tether.core.turn import INTERRUPTED
from tether.protocol.response import Usage

log = logging.getLogger(__name__)

FAILURES_KEPT = 1024


@dataclass(frozen=True)
class Prefill:
    cancel: Cancellation
    over: asyncio.Event


class WarmUps:
    def __init__(self, failures_kept: int = FAILURES_KEPT) -> None:
        self._running: dict[str, Prefill] = {}
        self._failed: OrderedDict[str, BackendError] = OrderedDict()
        self._failures_kept = failures_kept

    def __len__(self) -> int:
        """Prefills running now."""
        return len(self._running)

    async def prefill(self, response_id: str, work: Awaitable[Usage], cancel: Cancellation) -> Usage | None:
        """Run the prefill of the warm-up `response_id`: its usage, or None if it failed (kept for
        the turn that continues it) or was cancelled."""
        prefill = Prefill(cancel, asyncio.Event())
        self._running[response_id] = prefill
        try:
            usage = await work
        except BackendError as exc:
            log.warning("the prefill of warm-up %s failed: %s", response_id, exc)
            self._keep_failure(response_id, exc)
        except Exception as exc:
            log.exception("the prefill of warm-up %s failed", response_id)
            self._keep_failure(response_id, BackendError(str(exc)))
        else:
            return None if cancel.is_set else usage
        finally:
            del self._running[response_id]
            prefill.over.set()
        return None

    def waiter(self, parent_id: str | None) -> Callable[[], Awaitable[None]] | None:
        """What a turn continuing `parent_id` must await before it starts, if anything: a parent
        that has ended can have a prefill running, or failed, only if it is here now."""
        if parent_id is None or (parent_id not in self._running and parent_id not in self._failed):
            return None
        return lambda: self.ready(parent_id)

    async def ready(self, parent_id: str) -> None:
        """Return once nothing of `parent_id`'s warm-up still runs; raise `BackendError` if its
        prefill failed (a prefill cancelled because its client left is no failure)."""
        prefill = self._running.get(parent_id)
        if prefill is not None:
            await prefill.over.wait()
        failure = self._failed.pop(parent_id, None)
        if failure is not None:
            cause = failure.public or "the model backend failed"
            raise BackendError(
                f"warm-up {parent_id} failed: {failure}",
                public=f"The warm-up (generate: false) this response continues failed: {cause}",
            )

    def cancel_all(self) -> None:
        for prefill in list(self._running.values()):
            prefill.cancel.cancel(INTERRUPTED)

    def _keep_failure(self, response_id: str, failure: BackendError) -> None:
        self._failed[response_id] = failure
        while len(self._failed) > self._failures_kept:
            self._failed.popitem(last=False)
