"""What `store: true` turns cost PostgreSQL, and how fast processes reach each other through it:
the unit costs `docs/scaling.md` extrapolates from.

`Footprint` reads the database's write-ahead log position, size and row count, before and after
a workload, so that the bytes each stored turn writes (WAL) and keeps (table and index growth)
are measured, not estimated. `signal_latency` times a signal from one store to another (NOTIFY to
LISTEN), which is what a follower on one replica waits for on top of the owner's batching.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import asyncpg

from tether.store.base import Signal
from tether.store.postgres import PostgresStore


@dataclass(frozen=True)
class Footprint:
    wal_position: int  # bytes into the write-ahead log
    database_bytes: int
    responses: int


async def footprint(url: str) -> Footprint:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CHECKPOINT")  # sizes as written, not as still buffered
        return Footprint(
            wal_position=int(await connection.fetchval("SELECT pg_current_wal_lsn()")),
            database_bytes=int(await connection.fetchval("SELECT pg_database_size(current_database())")),
            responses=int(await connection.fetchval("SELECT count(*) FROM responses")),
        )
    finally:
        await connection.close()


async def signal_latency(url: str, signals: int = 200) -> list[float]:
    """Seconds from `signal` on one store to its arrival at another, one signal at a time."""
    sender, listener = PostgresStore(url), PostgresStore(url)
    await sender.open()
    await listener.open()
    arrived: dict[str, asyncio.Event] = {}
    listener.on_signal(lambda kind, response_id: arrived[response_id].set())
    took = []
    try:
        for n in range(signals):
            arrived[str(n)] = asyncio.Event()
            started = time.perf_counter()
            await sender.signal(Signal.CHANGED, str(n))
            await asyncio.wait_for(arrived[str(n)].wait(), 10)
            took.append(time.perf_counter() - started)
    finally:
        await sender.aclose()
        await listener.aclose()
    return took


def percentile(values: list[float], share: float) -> float:
    """The value `share` of the way up `values` (not empty)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
