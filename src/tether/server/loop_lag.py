"""How late this process's event loop runs: the measure of overload that admission refuses by.

Every protocol step of every connection (a handshake, a ping's pong, an event sent) waits for its
turn on the one event loop. Past what a process can take, each turn of the loop grows with the
work admitted, and a new connection's handshake, which needs several turns, waits for seconds: a
server that accepts everything ends up answering nothing in time (measured: 1,000 soak agents on
one process, upgrades answered after 13 s, `/healthz` after 26 s). A count of connections or of
responses cannot say where that point is, since it depends on the model and the machine; the
loop's lateness can. A timer due every `PERIOD_S` records how late it fires; the lag is the
median of the last `WINDOW_S` of those, so that one long step (a big prompt rendered on the loop)
is not taken for overload, while a loop that stays late is.
"""

from __future__ import annotations

import asyncio
import statistics
from collections import deque

PERIOD_S = 0.05
WINDOW_S = 1.0


class LoopLag:
    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque()  # (when, how late), oldest first

    @property
    def seconds(self) -> float:
        """The median lateness over the last `WINDOW_S` (0 before the first sample)."""
        return statistics.median(late for _, late in self._samples) if self._samples else 0.0

    async def run(self) -> None:
        """Sample for ever (a task of the app's lifespan)."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + PERIOD_S
            await asyncio.sleep(PERIOD_S)
            now = loop.time()
            self._samples.append((now, max(0.0, now - due)))
            while self._samples and self._samples[0][0] < now - WINDOW_S:
                self._samples.popleft()
