"""PostgreSQL store: one database shared by every Tether process that names it.

The same behaviour as the SQLite store (`sqlite.py`), over an asyncpg connection pool: a
response is written when it begins and when it ends, each one transaction; deleting a response
breaks the chains through it; every read is within one tenant.

Processes talk through the database itself: signals are NOTIFYs on one channel, heard on one
LISTEN connection per process (outside the pool); a write that changes a response notifies in its
own transaction, so the signal arrives only once the change is visible. Each process renews a
lease in `owners`; a running response whose owner holds no live lease is an orphan, judged by
PostgreSQL's clock alone (the processes' clocks may disagree).

Each response row holds its `ancestors`, root first (its parent's ancestors and the parent, set
as it is written), so a continuation reads its history with index lookups by id instead of
walking the chain link by link: a recursive walk was measured at 41 ms for 200 links, each step
planned as a scan of the whole table.

Migrations are versioned (`tether_schema`) and applied at start inside a transaction that holds
an advisory lock, so replicas that start together migrate once and the others wait for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, TypeVar

import asyncpg
import orjson

from tether.config import masked
from tether.store.base import (
    RUNNING,
    Chain,
    ItemPage,
    Json,
    Orphan,
    Progress,
    Relative,
    Signal,
    SignalHandler,
    StoredResponse,
    StoreError,
    new_owner,
)

T = TypeVar("T")

SCHEMA_VERSION = 5
_RUNNING = str(RUNNING)  # an SQL list: ('queued', 'in_progress')
_CHANNEL = "tether"  # every signal, as `kind:response_id`
_MIGRATION_LOCK = 0x7E7E_E12  # the advisory lock every starting process takes to migrate
# Each entry brings the schema from its index to the next version.
_MIGRATIONS = [
    """
    CREATE TABLE responses (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        previous_response_id TEXT,
        status TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        body BYTEA NOT NULL
    );
    CREATE TABLE items (
        response_id TEXT NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
        is_output BOOLEAN NOT NULL,
        position INTEGER NOT NULL,
        item_id TEXT,
        written BIGSERIAL,
        body BYTEA NOT NULL,
        PRIMARY KEY (response_id, is_output, position)
    );
    CREATE INDEX items_by_item_id ON items(item_id);
    CREATE TABLE events (
        response_id TEXT NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
        sequence_number INTEGER NOT NULL,
        body BYTEA NOT NULL,
        PRIMARY KEY (response_id, sequence_number)
    );
    """,
    # Ancestors, root first; NULL when a link was missing when the response was written.
    """
    ALTER TABLE responses ADD COLUMN ancestors TEXT[];
    WITH RECURSIVE lineage(id, ancestors) AS (
        SELECT id, ARRAY[]::TEXT[] FROM responses WHERE previous_response_id IS NULL
        UNION ALL
        SELECT r.id, lineage.ancestors || r.previous_response_id
        FROM responses r JOIN lineage ON r.previous_response_id = lineage.id
    )
    UPDATE responses SET ancestors = lineage.ancestors FROM lineage WHERE responses.id = lineage.id;
    """,
    # Owners: the process that began a running response, and how long each is known alive.
    f"""
    ALTER TABLE responses ADD COLUMN owner TEXT;
    CREATE INDEX responses_running ON responses(owner) WHERE status IN {_RUNNING};
    CREATE TABLE owners (owner TEXT PRIMARY KEY, lease_until TIMESTAMPTZ NOT NULL);
    """,
    # Secrets every process uses alike (the key that seals reasoning).
    "CREATE TABLE secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL);",
    # A chain's tree, read down from its root (`family`).
    "CREATE INDEX responses_by_parent ON responses(previous_response_id);",
]

# The response's ancestors still stored, root first, walked up from it (the `ancestors` column
# keeps those of when it was written, some perhaps deleted since). NULL for an unknown id.
_ANCESTORS = """
WITH RECURSIVE up(id, previous_response_id, depth) AS (
    SELECT id, previous_response_id, 0 FROM responses WHERE id = $1 AND tenant = $2
    UNION ALL
    SELECT r.id, r.previous_response_id, up.depth + 1
    FROM responses r JOIN up ON r.id = up.previous_response_id AND r.tenant = $2
)
SELECT CASE WHEN count(*) = 0 THEN NULL
            ELSE coalesce(array_agg(id ORDER BY depth DESC) FILTER (WHERE depth > 0), ARRAY[]::TEXT[]) END
FROM up
"""

# The root's descendants breadth first (each step of the recursion is one generation), at most
# $3 (the LIMIT stops the recursion once it has that many: a huge tree costs no more), and every
# response of the path $1, within tenant $2.
_FAMILY = """
WITH RECURSIVE tree(id, previous_response_id, status, created_at) AS (
    SELECT id, previous_response_id, status, created_at FROM responses
    WHERE id = ($1::TEXT[])[1] AND tenant = $2
    UNION ALL
    SELECT r.id, r.previous_response_id, r.status, r.created_at
    FROM responses r JOIN tree ON r.previous_response_id = tree.id AND r.tenant = $2
), kept AS (SELECT * FROM tree LIMIT $3)
SELECT * FROM kept
UNION
SELECT id, previous_response_id, status, created_at FROM responses WHERE id = ANY($1::TEXT[]) AND tenant = $2
"""

# Each write of a response is one statement, so one round trip: its items and events go in as
# arrays, unnested. (As separate statements in a transaction, a stored turn made 15 round trips
# and cost PostgreSQL 1.5x SQLite's time in `tether bench stores`.)


def _new_items(first: int) -> str:
    """The CTEs that write the items and events of response $1 when `written` has a row, from
    the six array parameters from `$first` on (see `_rows`)."""
    o, p, i, b, n, e = (f"${first + k}" for k in range(6))
    return f"""
new_items AS (
    INSERT INTO items (response_id, is_output, position, item_id, body)
    SELECT $1, o, p, i, b
    FROM unnest({o}::BOOLEAN[], {p}::INTEGER[], {i}::TEXT[], {b}::BYTEA[]) AS t(o, p, i, b)
    WHERE EXISTS (SELECT 1 FROM written)
), new_events AS (
    INSERT INTO events (response_id, sequence_number, body)
    SELECT $1, n, e FROM unnest({n}::INTEGER[], {e}::BYTEA[]) AS t(n, e) WHERE EXISTS (SELECT 1 FROM written)
    ON CONFLICT DO NOTHING
)"""


_INSERT = f"""
WITH written AS (
    INSERT INTO responses (id, tenant, previous_response_id, status, created_at, body, owner, ancestors)
    VALUES ($1, $2, $3, $4, $5, $6, $7,
            CASE WHEN $3::TEXT IS NULL THEN ARRAY[]::TEXT[]
                 ELSE (SELECT parent.ancestors || parent.id FROM responses parent WHERE parent.id = $3) END)
    RETURNING id
), {_new_items(8)}
SELECT count(*) FROM written
"""
# The end of a response saved as it began, written only while it still runs and is this process's ($4):
# else the count is 0 and nothing changed.
_FINISH = f"""
WITH written AS (
    UPDATE responses SET status = $2, body = $3 WHERE id = $1 AND owner = $4 AND status IN {_RUNNING}
    RETURNING id
), {_new_items(5)}, signalled AS (
    SELECT pg_notify('{_CHANNEL}', '{Signal.CHANGED.value}:' || id) FROM written
)
SELECT count(*) FROM written LEFT JOIN signalled ON true
"""
_OWNED = "SELECT 1 FROM responses WHERE id = $1 AND tenant = $2"
_NOTIFY = f"SELECT pg_notify('{_CHANNEL}', $1)"
# Running responses of other processes that hold no live lease (this process never sweeps its own:
# if it can sweep, it is alive).
_ORPHANS = f"""
SELECT id, tenant, owner, body,
       (SELECT coalesce(max(sequence_number), -1) FROM events WHERE response_id = responses.id)
FROM responses
WHERE status IN {_RUNNING} AND owner IS DISTINCT FROM $1
  AND NOT EXISTS (SELECT 1 FROM owners WHERE owners.owner = responses.owner AND lease_until > now())
"""


class PostgresStore:
    def __init__(self, url: str, max_connections: int = 10) -> None:
        self.url = url
        self.max_connections = max_connections
        self.owner = new_owner()
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None  # LISTENs; outside the pool
        self._on_signal: SignalHandler | None = None

    async def open(self) -> PostgresStore:
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.max_connections)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {masked(self.url)}: {exc}") from exc
        await self._run(self._migrate)
        await self._listen()
        return self

    async def _migrate(self, db: asyncpg.Connection) -> None:
        async with db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await db.execute("CREATE TABLE IF NOT EXISTS tether_schema (version INTEGER NOT NULL)")
            version = await db.fetchval("SELECT version FROM tether_schema")
            if version is None:
                await db.execute("INSERT INTO tether_schema VALUES (0)")
                version = 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the database has schema version {version}; this Tether knows {SCHEMA_VERSION}"
                )
            for step in range(version, SCHEMA_VERSION):
                await db.execute(_MIGRATIONS[step])
            await db.execute("UPDATE tether_schema SET version = $1", SCHEMA_VERSION)

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            raise StoreError("the store is not open")
        try:
            async with self._pool.acquire() as db:
                return await work(db)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"postgresql: {exc}") from exc

    async def save(self, record: StoredResponse) -> None:
        args = (record.id, record.tenant, record.previous_response_id, record.status, record.created_at,
                orjson.dumps(record.response), self.owner, *_rows(record))  # fmt: skip
        await self._run(lambda db: db.execute(_INSERT, *args))

    async def finish(self, record: StoredResponse) -> bool:
        args = (record.status, orjson.dumps(record.response), self.owner, *_rows(record, outputs_only=True))
        return bool(await self._run(lambda db: db.fetchval(_FINISH, record.id, *args)))

    async def publish(self, response_id: str, response: Json, events: list[Json]) -> None:
        async def write(db: asyncpg.Connection) -> None:
            async with db.transaction():
                await _insert_events(db, response_id, events)
                await db.execute(
                    f"UPDATE responses SET body = $2 WHERE id = $1 AND owner = $3 AND status IN {_RUNNING}",
                    response_id, orjson.dumps(response), self.owner,
                )  # fmt: skip
                await db.execute(_NOTIFY, f"{Signal.CHANGED.value}:{response_id}")

        await self._run(write)

    async def get(self, response_id: str, tenant: str) -> Json | None:
        async def read(db: asyncpg.Connection) -> Json | None:
            body = await db.fetchval(
                "SELECT body FROM responses WHERE id = $1 AND tenant = $2", response_id, tenant
            )
            return None if body is None else _json(body)

        return await self._run(read)

    async def chain(self, response_id: str, tenant: str) -> Chain | None:
        async def read(db: asyncpg.Connection) -> Chain | None:
            ancestors = await db.fetchval(
                "SELECT ancestors FROM responses WHERE id = $1 AND tenant = $2", response_id, tenant
            )
            if ancestors is None:  # unknown, or a link was missing when it was written
                return None
            links = (*ancestors, response_id)
            if not await _intact(db, links, tenant):  # a link deleted since, or another tenant's
                return None
            rows = await db.fetch(
                "SELECT body FROM items WHERE response_id = ANY($1::TEXT[]) "
                "ORDER BY array_position($1::TEXT[], response_id), is_output, position",
                list(links),
            )
            bodies = [row["body"] for row in rows]
            return Chain(links, [_json(body) for body in bodies], sum(map(len, bodies)))

        return await self._run(read)

    async def family(self, response_id: str, tenant: str, limit: int) -> list[Relative]:
        async def read(db: asyncpg.Connection) -> list[Relative]:
            ancestors = await db.fetchval(_ANCESTORS, response_id, tenant)
            if ancestors is None:
                return []
            path = [*ancestors, response_id]
            rows = await db.fetch(_FAMILY, path, tenant, limit)
            return [Relative(*row) for row in rows]

        return await self._run(read)

    async def intact(self, ids: tuple[str, ...], tenant: str) -> bool:
        return await self._run(lambda db: _intact(db, ids, tenant))

    async def input_items(
        self, response_id: str, tenant: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> ItemPage | None:
        async def read(db: asyncpg.Connection) -> ItemPage | None:
            if await db.fetchval(_OWNED, response_id, tenant) is None:
                return None
            direction, compare = ("ASC", ">") if order == "asc" else ("DESC", "<")
            start = ""
            args: list[Any] = [response_id, limit + 1]
            if after is not None:
                start = (
                    f"AND position {compare} (SELECT position FROM items WHERE response_id = $1 "
                    "AND NOT is_output AND item_id = $3)"
                )
                args.append(after)
            rows = await db.fetch(
                f"SELECT body FROM items WHERE response_id = $1 AND NOT is_output {start} "
                f"ORDER BY position {direction} LIMIT $2",
                *args,
            )
            items = [_json(row["body"]) for row in rows[:limit]]
            return ItemPage(items=items, has_more=len(rows) > limit)

        return await self._run(read)

    async def progress(self, response_id: str, tenant: str, starting_after: int) -> Progress | None:
        async def read(db: asyncpg.Connection) -> Progress | None:
            status = await db.fetchval(
                "SELECT status FROM responses WHERE id = $1 AND tenant = $2", response_id, tenant
            )
            if status is None:
                return None
            rows = await db.fetch(
                "SELECT body FROM events WHERE response_id = $1 AND sequence_number > $2 "
                "ORDER BY sequence_number",
                response_id, starting_after,
            )  # fmt: skip
            return Progress(status, [_json(row["body"]) for row in rows])

        return await self._run(read)

    async def find_item(self, item_id: str, tenant: str) -> Json | None:
        async def read(db: asyncpg.Connection) -> Json | None:
            body = await db.fetchval(
                "SELECT items.body FROM items JOIN responses ON responses.id = items.response_id "
                "WHERE item_id = $1 AND tenant = $2 "
                "ORDER BY responses.created_at DESC, items.written DESC LIMIT 1",
                item_id, tenant,
            )  # fmt: skip
            return None if body is None else _json(body)

        return await self._run(read)

    async def delete(self, response_id: str, tenant: str) -> bool:
        async def write(db: asyncpg.Connection) -> bool:
            status = await db.execute(
                "DELETE FROM responses WHERE id = $1 AND tenant = $2", response_id, tenant
            )
            return bool(status != "DELETE 0")

        return await self._run(write)

    async def renew(self, lease_s: float) -> None:
        async def write(db: asyncpg.Connection) -> None:
            await db.execute(
                "INSERT INTO owners VALUES ($1, now() + make_interval(secs => $2)) "
                "ON CONFLICT (owner) DO UPDATE SET lease_until = EXCLUDED.lease_until",
                self.owner, lease_s,
            )  # fmt: skip
            await db.execute("DELETE FROM owners WHERE lease_until < now()")

        await self._control(write)

    async def _control(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`work` on the listening connection, not the pool's: keeping this process's lease and
        ending orphans never waits behind the requests queued for the pool, so a process busy
        enough to keep every pooled connection taken is alive all the same (through the pool, a
        loaded worker renewed its lease 50 s late, and the other took it for dead)."""
        if self._listener is None or self._listener.is_closed():  # e.g. PostgreSQL restarted
            await self._listen()
        assert self._listener is not None
        try:
            return await work(self._listener)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"postgresql: {exc}") from exc

    async def orphans(self) -> list[Orphan]:
        async def read(db: asyncpg.Connection) -> list[Orphan]:
            rows = await db.fetch(_ORPHANS, self.owner)
            return [Orphan(row[0], row[1], row[2], _json(row[3]), row[4]) for row in rows]

        return await self._control(read)

    async def end_orphan(self, orphan: Orphan, response: Json, event: Json) -> bool:
        async def write(db: asyncpg.Connection) -> bool:
            async with db.transaction():
                updated = await db.execute(
                    "UPDATE responses SET status = $2, body = $3 "
                    f"WHERE id = $1 AND owner IS NOT DISTINCT FROM $4 AND status IN {_RUNNING}",
                    orphan.id, response["status"], orjson.dumps(response), orphan.owner,
                )  # fmt: skip
                if updated == "UPDATE 0":
                    return False
                await _insert_events(db, orphan.id, [event])
                await db.execute(_NOTIFY, f"{Signal.CHANGED.value}:{orphan.id}")
                return True

        return await self._control(write)

    async def signal(self, kind: Signal, response_id: str) -> None:
        await self._run(lambda db: db.execute(_NOTIFY, f"{kind.value}:{response_id}"))

    def on_signal(self, handler: SignalHandler) -> None:
        self._on_signal = handler

    async def _listen(self) -> None:
        try:
            listener = await asyncpg.connect(self.url)
            await listener.add_listener(_CHANNEL, self._heard)
        except (OSError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot listen on PostgreSQL at {masked(self.url)}: {exc}") from exc
        self._listener = listener

    def _heard(self, connection: object, pid: int, channel: str, payload: str) -> None:
        kind, _, response_id = payload.partition(":")
        if self._on_signal is not None:
            self._on_signal(Signal(kind), response_id)

    async def secret(self, name: str, candidate: bytes) -> bytes:
        async def keep(db: asyncpg.Connection) -> bytes:
            # Two statements: the second sees what a process that raced this one kept first.
            await db.execute("INSERT INTO secrets VALUES ($1, $2) ON CONFLICT DO NOTHING", name, candidate)
            return bytes(await db.fetchval("SELECT value FROM secrets WHERE name = $1", name))

        return await self._run(keep)

    async def check(self) -> None:
        async def ping(db: asyncpg.Connection) -> None:
            await db.fetchval("SELECT 1")

        await self._run(ping)

    async def aclose(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._pool is not None:
            # Whatever this process still owns is an orphan at once.
            await self._run(lambda db: db.execute("DELETE FROM owners WHERE owner = $1", self.owner))
            await self._pool.close()
            self._pool = None


def _rows(record: StoredResponse, outputs_only: bool = False) -> list[list[Any]]:
    """The six arrays of `_new_items`: the items' is_output, position, id and body, the events'
    sequence number and body."""
    lists = (() if outputs_only else record.input_items, record.output_items)
    items = [(bool(is_output), i, item.get("id"), orjson.dumps(item))
             for is_output, listed in enumerate(lists) for i, item in enumerate(listed)]  # fmt: skip
    events = [(e["sequence_number"], orjson.dumps(e)) for e in record.events]
    return [*_columns(items, 4), *_columns(events, 2)]


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[k] for row in rows] for k in range(width)]


async def _insert_events(db: asyncpg.Connection, response_id: str, events: Iterable[Json]) -> None:
    """Events already published are skipped (they are the same events)."""
    await db.executemany(
        "INSERT INTO events VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [(response_id, e["sequence_number"], orjson.dumps(e)) for e in events],
    )


async def _intact(db: asyncpg.Connection, ids: tuple[str, ...], tenant: str) -> bool:
    present = await db.fetchval(
        "SELECT count(*) FROM responses WHERE id = ANY($1::TEXT[]) AND tenant = $2", list(ids), tenant
    )
    return bool(present == len(set(ids)))


def _json(body: bytes) -> Json:
    value = orjson.loads(body)
    assert isinstance(value, dict)
    return value
