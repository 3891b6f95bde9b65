"""SQLite store (the default): one file, WAL mode, one writer thread.

Every call runs on a single dedicated thread, so the event loop never blocks on disk and SQLite
sees one connection. A response is written when it begins and when it ends (each one transaction).
One process serves a file, so every response still running in it when this process opens it was
left by a process that died: an orphan (`orphans`), and signals go to this process alone.
Deleting a response removes its rows; a later response that chained through it can no longer be
continued (its chain is broken), which `chain` reports as None.

Every response belongs to a tenant, and every read names one: another tenant's response is
indistinguishable from an unknown id. Older schemas are migrated in place: version 1
(before tenants) puts its responses in the default tenant, version 2 had no owners, version 3
no secrets.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

import orjson

from tether.store.base import (
    DEFAULT_TENANT,
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
_BY_PARENT = "CREATE INDEX IF NOT EXISTS responses_by_parent ON responses(previous_response_id)"
_SECRETS = "CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    previous_response_id TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body BLOB NOT NULL,
    tenant TEXT NOT NULL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS responses_running ON responses(status) WHERE status IN {_RUNNING};
{_BY_PARENT};
CREATE TABLE IF NOT EXISTS items (
    response_id TEXT NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    is_output INTEGER NOT NULL,
    position INTEGER NOT NULL,
    item_id TEXT,
    body BLOB NOT NULL,
    PRIMARY KEY (response_id, is_output, position)
);
CREATE INDEX IF NOT EXISTS items_by_item_id ON items(item_id);
CREATE TABLE IF NOT EXISTS events (
    response_id TEXT NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    sequence_number INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (response_id, sequence_number)
);
{_SECRETS};
"""

# Each brings the schema from its key to the next version.
_MIGRATIONS = {
    1: f"ALTER TABLE responses ADD COLUMN tenant TEXT NOT NULL DEFAULT '{DEFAULT_TENANT}'",
    2: "ALTER TABLE responses ADD COLUMN owner TEXT",  # the process that began a running response
    3: _SECRETS,
    4: _BY_PARENT,  # a chain's tree, read down from its root (`family`)
}

# Walks from a response to its chain's root, within one tenant; `depth` orders it root-first.
_CHAIN = """
WITH RECURSIVE chain(id, previous_response_id, depth) AS (
    SELECT id, previous_response_id, 0 FROM responses WHERE id = ? AND tenant = ?
    UNION ALL
    SELECT r.id, r.previous_response_id, chain.depth + 1
    FROM responses r JOIN chain ON r.id = chain.previous_response_id AND r.tenant = ?
)
SELECT id, previous_response_id, depth FROM chain ORDER BY depth DESC
"""
# A root's descendants, breadth first (SQLite's recursive queue is first in, first out), within
# one tenant; the LIMIT bounds the rows the recursion ever makes, so a huge tree costs no more.
_DESCENDANTS = """
WITH RECURSIVE tree(id, previous_response_id, status, created_at) AS (
    SELECT id, previous_response_id, status, created_at FROM responses WHERE id = ? AND tenant = ?
    UNION ALL
    SELECT r.id, r.previous_response_id, r.status, r.created_at
    FROM responses r JOIN tree ON r.previous_response_id = tree.id AND r.tenant = ?
    LIMIT ?
)
SELECT id, previous_response_id, status, created_at FROM tree
"""
_RELATIVE = "SELECT id, previous_response_id, status, created_at FROM responses WHERE id = ? AND tenant = ?"
_OWNED = "SELECT 1 FROM responses WHERE id = ? AND tenant = ?"


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.owner = new_owner()
        self._on_signal: SignalHandler | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tether-sqlite")
        self._db: sqlite3.Connection | None = None

    async def open(self) -> SqliteStore:
        await self._run(self._open)
        return self

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL mode
        db.execute("PRAGMA foreign_keys=ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, *_MIGRATIONS, SCHEMA_VERSION):
            raise StoreError(f"{self.path} has schema version {version}; expected {SCHEMA_VERSION}")
        with db:  # one transaction: a crash mid-migration leaves the old schema
            db.execute("BEGIN")
            for step in range(version or SCHEMA_VERSION, SCHEMA_VERSION):
                db.execute(_MIGRATIONS[step])
            for statement in _SCHEMA.split(";"):  # IF NOT EXISTS: a no-op on an existing file
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._db = db

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite: {exc}") from exc

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    async def save(self, record: StoredResponse) -> None:
        def write() -> None:
            with self.db:
                self.db.execute("BEGIN")
                self._insert(record)

        await self._run(write)

    async def finish(self, record: StoredResponse) -> bool:
        def write() -> bool:
            db = self.db
            with db:
                db.execute("BEGIN")
                cursor = db.execute(
                    "UPDATE responses SET status = ?, body = ? "
                    f"WHERE id = ? AND owner = ? AND status IN {_RUNNING}",
                    (record.status, orjson.dumps(record.response), record.id, self.owner),
                )
                if cursor.rowcount == 0:
                    return False
                self._insert_items(record.id, True, record.output_items)
                self._insert_events(record.id, record.events)
                return True

        finished = await self._run(write)
        if finished:
            await self.signal(Signal.CHANGED, record.id)
        return finished

    def _insert(self, record: StoredResponse) -> None:
        self.db.execute(
            "INSERT INTO responses (id, previous_response_id, status, created_at, body, tenant, owner) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (record.id, record.previous_response_id, record.status, record.created_at,
             orjson.dumps(record.response), record.tenant, self.owner),
        )  # fmt: skip
        self._insert_items(record.id, False, record.input_items)
        self._insert_items(record.id, True, record.output_items)
        self._insert_events(record.id, record.events)

    def _insert_items(self, response_id: str, is_output: bool, items: tuple[Json, ...]) -> None:
        self.db.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
            [(response_id, is_output, i, item.get("id"), orjson.dumps(item)) for i, item in enumerate(items)],
        )

    def _insert_events(self, response_id: str, events: Iterable[Json]) -> None:
        """Events already published are skipped (they are the same events)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?)",
            [(response_id, e["sequence_number"], orjson.dumps(e)) for e in events],
        )

    async def publish(self, response_id: str, response: Json, events: list[Json]) -> None:
        def write() -> None:
            with self.db:
                self.db.execute("BEGIN")
                self._insert_events(response_id, events)
                self.db.execute(
                    f"UPDATE responses SET body = ? WHERE id = ? AND owner = ? AND status IN {_RUNNING}",
                    (orjson.dumps(response), response_id, self.owner),
                )

        await self._run(write)
        await self.signal(Signal.CHANGED, response_id)

    async def get(self, response_id: str, tenant: str) -> Json | None:
        def read() -> Json | None:
            row = self.db.execute(
                "SELECT body FROM responses WHERE id = ? AND tenant = ?", (response_id, tenant)
            ).fetchone()
            return None if row is None else orjson.loads(row[0])

        return await self._run(read)

    async def chain(self, response_id: str, tenant: str) -> Chain | None:
        def read() -> Chain | None:
            links = self.db.execute(_CHAIN, (response_id, tenant, tenant)).fetchall()
            if not links or links[0][1] is not None:  # unknown id, or a missing ancestor
                return None
            bodies: list[bytes] = []
            for link_id, _, _ in links:
                rows = self.db.execute(
                    "SELECT body FROM items WHERE response_id = ? ORDER BY is_output, position",
                    (link_id,),
                )
                bodies.extend(body for (body,) in rows)
            ids = tuple(link_id for link_id, _, _ in links)
            return Chain(ids, [orjson.loads(body) for body in bodies], sum(map(len, bodies)))

        return await self._run(read)

    async def family(self, response_id: str, tenant: str, limit: int) -> list[Relative]:
        def read() -> list[Relative]:
            path = [link for link, _, _ in self.db.execute(_CHAIN, (response_id, tenant, tenant))]
            if not path:
                return []
            tree = self.db.execute(_DESCENDANTS, (path[0], tenant, tenant, limit)).fetchall()
            found = {row[0] for row in tree}
            missing = [link for link in path if link not in found]
            tree += [self.db.execute(_RELATIVE, (link, tenant)).fetchone() for link in missing]
            return [Relative(*row) for row in tree]

        return await self._run(read)

    async def intact(self, ids: tuple[str, ...], tenant: str) -> bool:
        def read() -> bool:
            marks = ", ".join("?" * len(ids))
            query = f"SELECT count(*) FROM responses WHERE tenant = ? AND id IN ({marks})"
            (present,) = self.db.execute(query, (tenant, *ids)).fetchone()
            return bool(present == len(set(ids)))

        return await self._run(read)

    async def input_items(
        self, response_id: str, tenant: str, *, after: str | None, limit: int, order: Literal["asc", "desc"]
    ) -> ItemPage | None:
        def read() -> ItemPage | None:
            db = self.db
            if db.execute(_OWNED, (response_id, tenant)).fetchone() is None:
                return None
            direction, compare = ("ASC", ">") if order == "asc" else ("DESC", "<")
            start = ""
            args: list[object] = [response_id]
            if after is not None:
                start = (
                    f"AND position {compare} (SELECT position FROM items WHERE response_id = ? "
                    "AND is_output = 0 AND item_id = ?)"
                )
                args += [response_id, after]
            rows = db.execute(
                f"SELECT body FROM items WHERE response_id = ? AND is_output = 0 {start} "
                f"ORDER BY position {direction} LIMIT ?",
                [*args, limit + 1],
            ).fetchall()
            items = [orjson.loads(body) for (body,) in rows[:limit]]
            return ItemPage(items=items, has_more=len(rows) > limit)

        return await self._run(read)

    async def progress(self, response_id: str, tenant: str, starting_after: int) -> Progress | None:
        def read() -> Progress | None:
            db = self.db
            row = db.execute(
                "SELECT status FROM responses WHERE id = ? AND tenant = ?", (response_id, tenant)
            ).fetchone()
            if row is None:
                return None
            rows = db.execute(
                "SELECT body FROM events WHERE response_id = ? AND sequence_number > ? "
                "ORDER BY sequence_number",
                (response_id, starting_after),
            )
            return Progress(row[0], [orjson.loads(body) for (body,) in rows])

        return await self._run(read)

    async def find_item(self, item_id: str, tenant: str) -> Json | None:
        def read() -> Json | None:
            row = self.db.execute(
                "SELECT items.body FROM items JOIN responses ON responses.id = items.response_id "
                "WHERE item_id = ? AND tenant = ? "
                "ORDER BY responses.created_at DESC, items.rowid DESC LIMIT 1",
                (item_id, tenant),
            ).fetchone()
            return None if row is None else orjson.loads(row[0])

        return await self._run(read)

    async def delete(self, response_id: str, tenant: str) -> bool:
        def write() -> bool:
            with self.db:
                cursor = self.db.execute(
                    "DELETE FROM responses WHERE id = ? AND tenant = ?", (response_id, tenant)
                )
            return cursor.rowcount > 0

        return await self._run(write)

    async def renew(self, lease_s: float) -> None:
        """Nothing to renew: one process serves a file."""

    async def orphans(self) -> list[Orphan]:
        def read() -> list[Orphan]:
            rows = self.db.execute(
                "SELECT id, tenant, owner, body, (SELECT coalesce(max(sequence_number), -1) FROM events "
                f"WHERE response_id = responses.id) FROM responses WHERE status IN {_RUNNING} "
                "AND owner IS NOT ?",
                (self.owner,),
            )
            return [
                Orphan(id, tenant, owner, orjson.loads(body), last) for id, tenant, owner, body, last in rows
            ]

        return await self._run(read)

    async def end_orphan(self, orphan: Orphan, response: Json, event: Json) -> bool:
        def write() -> bool:
            with self.db:
                self.db.execute("BEGIN")
                cursor = self.db.execute(
                    "UPDATE responses SET status = ?, body = ? "
                    f"WHERE id = ? AND owner IS ? AND status IN {_RUNNING}",
                    (response["status"], orjson.dumps(response), orphan.id, orphan.owner),
                )
                if cursor.rowcount == 0:
                    return False
                self._insert_events(orphan.id, [event])
                return True

        ended = await self._run(write)
        if ended:
            await self.signal(Signal.CHANGED, orphan.id)
        return ended

    async def signal(self, kind: Signal, response_id: str) -> None:
        """Heard by this process alone, the only one serving the file."""
        if self._on_signal is not None:
            asyncio.get_running_loop().call_soon(self._on_signal, kind, response_id)

    def on_signal(self, handler: SignalHandler) -> None:
        self._on_signal = handler

    async def secret(self, name: str, candidate: bytes) -> bytes:
        def keep() -> bytes:
            self.db.execute("INSERT OR IGNORE INTO secrets VALUES (?, ?)", (name, candidate))
            return bytes(self.db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()[0])

        return await self._run(keep)

    async def check(self) -> None:
        await self._run(lambda: self.db.execute("SELECT 1").fetchone())

    async def aclose(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(close)
        self._executor.shutdown(wait=True)
