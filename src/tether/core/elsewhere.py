"""Responses running in another process that shares the store, and the processes that died.

Several Tether processes may serve one store. A `store: true` response is begun in the store
before its id reaches anyone, so every process can find it while it runs; this is how a process
that does not run it still serves it:
- a stream (`GET ?stream=true`) asks the owner to publish (`Signal.PUBLISH`), then reads the
  events from the store each time the owner signals CHANGED — live, a batch at a time;
- a cancel asks the owner (`Signal.CANCEL`) and waits until the store shows it ended.
Each process renews its lease every third of `lease_s`, and ends the orphans it finds then: the
running responses of processes that stopped renewing (killed, frozen, cut off). An orphan ends
`failed` with `server_error`, not `incomplete`: what it had produced was lost with its process,
and `incomplete` would promise a response that can be continued with its output so far. A queued
background response ends the same way rather than being run again elsewhere: its client may
already have read its first events, which a second run would contradict. So no response stays
running longer than about `lease_s` plus a third of it after its process died.

Signals are a shortcut, never needed for correctness: a follower reads the store at least every
`POLL_S` anyway (a signal may be lost while a listener reconnects).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator

from tether.core.running import Running
from tether.protocol import errors, events, resources
from tether.protocol.events import Event
from tether.store.base import RUNNING, Json, Signal, Store, StoreError

log = logging.getLogger(__name__)

# A follower of a response running elsewhere reads the store at least this often.
POLL_S = 1.0
# The events of a followed response are written in batches at most this often: a follower sees
# them this much later at worst, and a fast model costs one write per batch, not one per token.
PUBLISH_INTERVAL_S = 0.02


class Elsewhere:
    def __init__(self, store: Store, lease_s: float) -> None:
        self.store = store
        self.lease_s = lease_s
        self._watchers: dict[str, set[asyncio.Event]] = {}
        self._renewed: float | None = None  # when this process last renewed its lease

    def changed(self, response_id: str) -> None:
        """A CHANGED signal: wake whoever here waits on that response."""
        for watcher in self._watchers.get(response_id, ()):
            watcher.set()

    @contextlib.contextmanager
    def _watch(self, response_id: str) -> Iterator[asyncio.Event]:
        watcher = asyncio.Event()
        self._watchers.setdefault(response_id, set()).add(watcher)
        try:
            yield watcher
        finally:
            watchers = self._watchers[response_id]
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[response_id]

    async def follow(self, response_id: str, tenant: str, starting_after: int) -> AsyncIterator[Event]:
        """The events after `starting_after` of a stored response, live until it ends (a
        response deleted meanwhile just ends the stream)."""
        with self._watch(response_id) as changed:
            asked = False
            while True:
                changed.clear()  # before the read: a change during it wakes the wait below
                progress = await self.store.progress(response_id, tenant, starting_after)
                if progress is None:
                    return
                for event in progress.events:
                    yield event
                    starting_after = events.sequence_of(event)
                if progress.status not in RUNNING:
                    return
                if not asked:  # once it is known to run elsewhere
                    await self.store.signal(Signal.PUBLISH, response_id)
                    asked = True
                await _wait(changed)

    async def publish(self, running: Running) -> None:
        """Write the events of a response running here as they come (a follower elsewhere reads
        them), until its end is written by `finish`, which stops this first."""
        written = 0
        while True:
            batch, closed = await running.log.beyond(written)
            if closed:
                return
            try:
                await self.store.publish(running.id, running.snapshot(), batch)
            except StoreError as exc:  # its followers still get everything once it is finished
                log.warning("could not publish the events of %s: %s", running.id, exc)
                return
            written += len(batch)
            await asyncio.sleep(PUBLISH_INTERVAL_S)

    async def cancel(self, response_id: str, tenant: str) -> Json | None:
        """Ask its owner to cancel it, then wait until it has ended (an owner that died cannot
        answer: its response ends as an orphan). The Response as stored then."""
        with self._watch(response_id) as changed:
            await self.store.signal(Signal.CANCEL, response_id)
            while True:
                changed.clear()
                response = await self.store.get(response_id, tenant)
                if response is None or resources.status_of(response) not in RUNNING:
                    return response
                await _wait(changed)

    async def keep_alive(self) -> None:
        """A `round` every third of the lease, for ever (the first is the caller's, at start). A
        store that fails is retried at the next round (the lease may lapse meanwhile, which only
        makes this process's responses orphans once it is gone for good)."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.round()
            except StoreError as exc:
                log.warning("could not renew this process's lease or end orphans: %s", exc)

    async def round(self) -> None:
        """Renew this process's lease, then end the orphans."""
        await self.store.renew(self.lease_s)
        now = time.monotonic()
        if self._renewed is not None and now - self._renewed > self.lease_s / 2:
            log.warning("this process renewed its lease %.1f s after the previous time; at %g s "
                        "the others take it for dead", now - self._renewed, self.lease_s)  # fmt: skip
        self._renewed = now
        await self.sweep()

    async def sweep(self) -> int:
        """End every orphan now; how many this process ended."""
        ended = 0
        for orphan in await self.store.orphans():
            response, event = events.abandoned(
                orphan.response, errors.owner_stopped(), orphan.last_sequence + 1
            )
            if await self.store.end_orphan(orphan, response, event):
                log.warning("response %s ended failed: its process (%s) stopped", orphan.id, orphan.owner)
                ended += 1
        return ended


async def _wait(changed: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(changed.wait(), POLL_S)
