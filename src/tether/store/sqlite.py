"""SQLite store (the default): one file, WAL mode, one writer thread.

Every call runs on a single dedicated thread, so the event loop never blocks on disk and SQLite
sees one connection. A response, its items and its event log are written in one transaction.
Deleting a response removes its rows; a later response that chained through it can no longer be
continued (its chain is broken), which `chain` reports as None.

Every response belongs to a tenant, and every read names one: another tenant's response is
indistinguishable from an unknown id. Schema version 1 (before tenants) is migrated in place,
its responses going to the default tenant.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

import orjson

from tether.store.base import DEFAULT_TENANT, Chain, ItemPage, Json, StoredResponse, StoreError

T = TypeVar("T")

SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    previous_response_id TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    body BLOB NOT NULL,
    tenant TEXT NOT NULL
);
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
"""

_MIGRATIONS = {1: f"ALTER TABLE responses ADD COLUMN tenant TEXT NOT NULL DEFAULT '{DEFAULT_TENANT}'"}

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
_OWNED = "SELECT 1 FROM responses WHERE id = ? AND tenant = ?"


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
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
            db = self.db
            with db:  # one transaction
                db.execute("BEGIN")
                db.execute("DELETE FROM responses WHERE id = ?", (record.id,))
                db.execute(
                    "INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?)",
                    (record.id, record.previous_response_id, record.status, record.created_at,
                     orjson.dumps(record.response), record.tenant),
                )  # fmt: skip
                db.executemany(
                    "INSERT INTO items VALUES (?, ?, ?, ?, ?)",
                    [(record.id, is_output, i, item.get("id"), orjson.dumps(item))
                     for is_output, items in enumerate((record.input_items, record.output_items))
                     for i, item in enumerate(items)],
                )  # fmt: skip
                db.executemany(
                    "INSERT INTO events VALUES (?, ?, ?)",
                    [(record.id, e["sequence_number"], orjson.dumps(e)) for e in record.events],
                )

        await self._run(write)

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

    async def events(self, response_id: str, tenant: str, starting_after: int) -> list[Json] | None:
        def read() -> list[Json] | None:
            db = self.db
            if db.execute(_OWNED, (response_id, tenant)).fetchone() is None:
                return None
            rows = db.execute(
                "SELECT body FROM events WHERE response_id = ? AND sequence_number > ? "
                "ORDER BY sequence_number",
                (response_id, starting_after),
            )
            return [orjson.loads(body) for (body,) in rows]

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

    async def check(self) -> None:
        await self._run(lambda: self.db.execute("SELECT 1").fetchone())

    async def aclose(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(close)
        self._executor.shutdown(wait=True)
