"""Both stores, each on a real database (a SQLite file, a PostgreSQL server): atomic records,
chains, pagination, deletion, tenants, migrations, running responses, orphans and signals."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tether.app import open_store
from tether.bench.postgres import Postgres
from tether.config import Storage
from tether.store import sqlite
from tether.store.base import DEFAULT_TENANT, Signal, Store, StoredResponse, StoreError
from tether.store.postgres import _MIGRATIONS, SCHEMA_VERSION

T = DEFAULT_TENANT


def record(
    response_id: str, parent: str | None, inputs: list[str], output: str, tenant: str = T
) -> StoredResponse:
    return StoredResponse(
        id=response_id,
        tenant=tenant,
        previous_response_id=parent,
        status="completed",
        created_at=1,
        response={"id": response_id, "status": "completed"},
        input_items=tuple({"id": f"{response_id}_{t}", "text": t} for t in inputs),
        output_items=({"id": f"{response_id}_out", "text": output},),
        events=({"type": "response.created", "sequence_number": 0},
                {"type": "response.completed", "sequence_number": 1}),
    )  # fmt: skip


def begun(response_id: str) -> StoredResponse:
    """`record` as it is begun: running, its input, its first event, no output."""
    whole = record(response_id, None, ["a"], "A")
    running = {"id": response_id, "status": "in_progress"}
    return replace(whole, status="in_progress", response=running, output_items=(), events=whole.events[:1])


Location = str  # what `--db` says


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    """A new, empty database of each kind."""
    if request.param == "sqlite":
        return str(tmp_path / "s.db")
    postgres: Postgres = request.getfixturevalue("postgres")
    return postgres.new_database()


def run(db: Location, body: Callable[[Store], Any]) -> Any:
    """`body` on the store at `db`, opened for it and closed after."""

    async def main() -> Any:
        store = await open_store(Storage(db=db))
        try:
            return await body(store)
        finally:
            await store.aclose()

    return asyncio.run(main())


def test_a_chain_reads_back_root_first(db: Location) -> None:
    async def body(store: Store) -> Any:
        await store.save(record("r1", None, ["a"], "A"))
        await store.save(record("r2", "r1", ["b", "c"], "B"))
        return await store.chain("r2", T)

    chain = run(db, body)
    assert chain.ids == ("r1", "r2")
    assert [i["text"] for i in chain.items] == ["a", "A", "b", "c", "B"]


def test_data_survives_reopening_the_store(db: Location) -> None:
    run(db, lambda store: store.save(record("r1", None, ["a"], "A")))
    assert run(db, lambda store: store.get("r1", T)) == {"id": "r1", "status": "completed"}
    progress = run(db, lambda s: s.progress("r1", T, 0))
    assert progress.status == "completed" and [e["sequence_number"] for e in progress.events] == [1]


def test_input_items_paginate_with_a_cursor(db: Location) -> None:
    async def body(store: Store) -> Any:
        await store.save(record("r1", None, list("abcde"), "X"))
        first = await store.input_items("r1", T, after=None, limit=2, order="asc")
        second = await store.input_items("r1", T, after=first.items[-1]["id"], limit=2, order="asc")
        newest = await store.input_items("r1", T, after=None, limit=5, order="desc")
        return first, second, newest

    first, second, newest = run(db, body)
    assert [i["text"] for i in first.items] == ["a", "b"] and first.has_more
    assert [i["text"] for i in second.items] == ["c", "d"] and second.has_more
    assert [i["text"] for i in newest.items] == list("edcba") and not newest.has_more


def test_deleting_a_link_breaks_the_chain_beyond_it(db: Location) -> None:
    async def body(store: Store) -> Any:
        await store.save(record("r1", None, ["a"], "A"))
        await store.save(record("r2", "r1", ["b"], "B"))
        deleted = await store.delete("r1", T)
        return (
            deleted,
            await store.get("r1", T),
            await store.chain("r2", T),
            await store.delete("r1", T),
        )

    assert run(db, body) == (True, None, None, False)


def test_find_item_returns_the_latest_copy_of_an_id(db: Location) -> None:
    async def body(store: Store) -> Any:
        await store.save(record("r1", None, ["a"], "A"))
        return await store.find_item("r1_out", T), await store.find_item("nope", T)

    assert run(db, body) == ({"id": "r1_out", "text": "A"}, None)


def test_every_read_is_within_one_tenant(db: Location) -> None:
    async def body(store: Store) -> Any:
        await store.save(record("r1", None, ["a"], "A", tenant="alice"))
        await store.save(record("r2", "r1", ["b"], "B", tenant="alice"))
        seen_by_bob = (
            await store.get("r1", "bob"),
            await store.chain("r2", "bob"),
            await store.input_items("r1", "bob", after=None, limit=5, order="asc"),
            await store.progress("r1", "bob", -1),
            await store.find_item("r1_out", "bob"),
            await store.delete("r1", "bob"),
        )
        return seen_by_bob, (await store.chain("r2", "alice")).items

    seen_by_bob, alices_chain = run(db, body)
    assert seen_by_bob == (None, None, None, None, None, False)
    assert [i["text"] for i in alices_chain] == ["a", "A", "b", "B"]


def test_a_chain_never_crosses_tenants(db: Location) -> None:
    """A link written under another tenant breaks the chain, as a missing one does."""

    async def body(store: Store) -> Any:
        await store.save(record("r1", None, ["a"], "A", tenant="bob"))
        await store.save(record("r2", "r1", ["b"], "B", tenant="alice"))
        return await store.chain("r2", "alice")

    assert run(db, body) is None


def test_a_file_from_before_tenants_is_migrated_to_the_default_tenant(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE responses (id TEXT PRIMARY KEY, previous_response_id TEXT, status TEXT NOT NULL,"
        " created_at INTEGER NOT NULL, body BLOB NOT NULL);"
        "INSERT INTO responses VALUES ('r1', NULL, 'completed', 1, '{\"id\": \"r1\"}');"
        "PRAGMA user_version=1;"
    )
    db.close()
    assert run(str(path), lambda store: store.get("r1", DEFAULT_TENANT)) == {"id": "r1"}
    assert run(str(path), lambda store: store.get("r1", "alice")) is None
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (sqlite.SCHEMA_VERSION,)


def test_a_secret_is_the_first_one_kept_for_every_process_and_after_a_restart(db: Location) -> None:
    first = run(db, lambda store: store.secret("reasoning", b"one"))
    assert first == b"one"
    assert run(db, lambda store: store.secret("reasoning", b"two")) == b"one"  # reopened: kept
    assert run(db, lambda store: store.secret("other", b"two")) == b"two"  # each name its own


def test_replicas_starting_together_migrate_once(postgres: Postgres) -> None:
    """Each starting process migrates under an advisory lock: eight at once leave one schema."""
    url = postgres.new_database()

    async def start_together() -> list[Any]:
        stores = await asyncio.gather(*(open_store(Storage(db=url)) for _ in range(8)))
        for store in stores:
            await store.aclose()
        connection = await asyncpg.connect(url)
        try:
            return [tuple(row) for row in await connection.fetch("SELECT version FROM tether_schema")]
        finally:
            await connection.close()

    assert asyncio.run(start_together()) == [(SCHEMA_VERSION,)]


def test_a_database_from_a_newer_tether_is_refused(postgres: Postgres) -> None:
    url = postgres.new_database()
    run(url, lambda store: store.get("r1", T))

    async def from_the_future() -> None:
        connection = await asyncpg.connect(url)
        await connection.execute("UPDATE tether_schema SET version = 99")
        await connection.close()

    asyncio.run(from_the_future())
    with pytest.raises(StoreError, match="schema version 99"):
        run(url, lambda store: store.get("r1", T))


def test_a_database_of_schema_1_gets_its_ancestors_filled_in(postgres: Postgres) -> None:
    """Version 2 stores each response's ancestors; the migration fills them in for the chains
    already there, and a chain broken before stays broken."""
    url = postgres.new_database()

    async def version_1() -> None:
        connection = await asyncpg.connect(url)
        await connection.execute(_MIGRATIONS[0])
        await connection.execute("CREATE TABLE tether_schema (version INTEGER NOT NULL)")
        await connection.execute("INSERT INTO tether_schema VALUES (1)")
        rows = [("r1", None), ("r2", "r1"), ("r3", "r2"), ("orphan", "deleted")]
        for response_id, parent in rows:
            await connection.execute(
                "INSERT INTO responses VALUES ($1, 'default', $2, 'completed', 1, $3)",
                response_id, parent, b'{"id": "%s"}' % response_id.encode(),
            )  # fmt: skip
            await connection.execute(
                "INSERT INTO items (response_id, is_output, position, item_id, body) "
                "VALUES ($1, false, 0, $2, $3)",
                response_id, f"{response_id}_in", b'{"text": "%s"}' % response_id.encode(),
            )  # fmt: skip
        await connection.close()

    asyncio.run(version_1())

    async def body(store: Store) -> Any:
        return await store.chain("r3", T), await store.chain("orphan", T)

    chain, orphan = run(url, body)
    assert [item["text"] for item in chain.items] == ["r1", "r2", "r3"] and orphan is None


def test_intact_says_whether_every_link_is_still_the_tenants(db: Location) -> None:
    async def body(store: Store) -> Any:
        await store.save(record("r1", None, ["a"], "A"))
        await store.save(record("r2", "r1", ["b"], "B"))
        whole = await store.intact(("r1", "r2"), T)
        other_tenant = await store.intact(("r1", "r2"), "bob")
        await store.delete("r1", T)
        return whole, other_tenant, await store.intact(("r1", "r2"), T), await store.intact(("r2",), T)

    assert run(db, body) == (True, False, False, True)


def test_a_response_is_begun_then_finished_once(db: Location) -> None:
    async def body(store: Store) -> Any:
        await store.save(begun("r1"))
        running = await store.get("r1", T), await store.progress("r1", T, -1)
        first = await store.finish(record("r1", None, ["a"], "A"))
        again = await store.finish(record("r1", None, ["a"], "A"))
        return running, first, again, await store.progress("r1", T, -1), await store.chain("r1", T)

    (response, running), first, again, ended, chain = run(db, body)
    assert response["status"] == running.status == "in_progress" and len(running.events) == 1
    assert (first, again) == (True, False)  # a second end is refused: the first one stands
    assert ended.status == "completed" and [e["sequence_number"] for e in ended.events] == [0, 1]
    assert [i["text"] for i in chain.items] == ["a", "A"]  # the input written once, at the start


def test_published_events_are_read_while_it_runs_and_kept_once(db: Location) -> None:
    async def body(store: Store) -> Any:
        await store.save(begun("r1"))
        delta = {"type": "response.output_text.delta", "sequence_number": 1}
        await store.publish("r1", {"id": "r1", "status": "in_progress", "output": ["so far"]}, [delta])
        midway = await store.progress("r1", T, 0), await store.get("r1", T)
        done = {"type": "response.completed", "sequence_number": 2}
        whole = record("r1", None, ["a"], "A")
        await store.finish(replace(whole, events=(*whole.events[:1], delta, done)))
        return midway, await store.progress("r1", T, -1)

    (running, response), ended = run(db, body)
    assert running.status == "in_progress" and running.events == [{"type": "response.output_text.delta",
                                                                     "sequence_number": 1}]  # fmt: skip
    assert response["output"] == ["so far"]  # the Response as it stands
    assert [e["sequence_number"] for e in ended.events] == [0, 1, 2]


def test_what_a_dead_process_left_running_is_an_orphan_ended_once(db: Location) -> None:
    """The process that began it closed without finishing it (as a killed one would); the next
    one finds it, and only one end is written."""
    run(db, lambda store: store.save(begun("r1")))

    async def body(store: Store) -> Any:
        await store.renew(10)
        (orphan,) = await store.orphans()
        response = {"id": "r1", "status": "failed"}
        event = {"type": "response.failed", "sequence_number": orphan.last_sequence + 1}
        ended = (
            await store.end_orphan(orphan, response, event),
            await store.end_orphan(orphan, response, event),
        )
        return orphan, ended, await store.progress("r1", T, -1), await store.orphans()

    orphan, ended, progress, left = run(db, body)
    assert (orphan.id, orphan.tenant, orphan.last_sequence) == ("r1", T, 0)
    assert ended == (True, False) and left == []
    assert progress.status == "failed" and [e["type"] for e in progress.events][-1] == "response.failed"


def test_a_live_process_s_responses_are_orphans_only_once_its_lease_lapses(postgres: Postgres) -> None:
    url = postgres.new_database()

    async def main() -> tuple[list[str], list[str]]:
        owner, other = await open_store(Storage(db=url)), await open_store(Storage(db=url))
        try:
            await owner.renew(0.5)
            await owner.save(begun("r1"))
            while_alive = [o.id for o in await other.orphans()]
            await asyncio.sleep(1.0)
            return while_alive, [o.id for o in await other.orphans()]
        finally:
            await owner.aclose()
            await other.aclose()

    assert asyncio.run(main()) == ([], ["r1"])


def test_signals_reach_every_process_sharing_the_store(db: Location) -> None:
    """PostgreSQL: through NOTIFY, to the other process; SQLite: to this one (the only one)."""

    async def main() -> list[tuple[Signal, str]]:
        sender, listener = await open_store(Storage(db=db)), await open_store(Storage(db=db))
        heard: list[tuple[Signal, str]] = []
        listener.on_signal(lambda kind, response_id: heard.append((kind, response_id)))
        sender.on_signal(lambda kind, response_id: heard.append((kind, response_id)))
        try:
            await sender.signal(Signal.CANCEL, "r1")
            await sender.save(begun("r2"))
            await sender.finish(record("r2", None, ["a"], "A"))  # a begun response's end is signalled
            for _ in range(100):
                if len(heard) >= 4 or (len(heard) >= 2 and db.endswith(".db")):
                    break
                await asyncio.sleep(0.05)
            return heard
        finally:
            await sender.aclose()
            await listener.aclose()

    heard = asyncio.run(main())
    assert (Signal.CANCEL, "r1") in heard and (Signal.CHANGED, "r2") in heard


def test_a_family_is_the_whole_tree_of_a_chain_with_its_forks(db: Location) -> None:
    async def body(store: Store) -> Any:
        for response_id, parent in [("r1", None), ("r2", "r1"), ("r3", "r1"), ("r4", "r2"), ("o1", None)]:
            await store.save(record(response_id, parent, ["a"], "A"))
        await store.save(record("x2", "r1", ["a"], "A", tenant="other"))  # another tenant's fork
        return [await store.family(r, T, 100) for r in ("r4", "r1", "o1", "x2", "nope")]

    from_leaf, from_root, alone, others, unknown = run(db, body)
    tree = {(node.id, node.previous_response_id) for node in from_leaf}
    assert tree == {("r1", None), ("r2", "r1"), ("r3", "r1"), ("r4", "r2")}
    assert {node.id for node in from_root} == {"r1", "r2", "r3", "r4"}
    assert [(node.id, node.status, node.created_at) for node in alone] == [("o1", "completed", 1)]
    assert others == unknown == []


def test_a_family_past_its_limit_keeps_the_path_to_the_response(db: Location) -> None:
    async def body(store: Store) -> Any:
        await store.save(record("r0", None, ["a"], "A"))
        for n in range(1, 30):
            await store.save(record(f"r{n}", f"r{n - 1}", ["a"], "A"))
            await store.save(record(f"f{n}", f"r{n - 1}", ["a"], "A"))  # a fork at every step
        return await store.family("r29", T, 10)

    ids = {node.id for node in run(db, body)}
    assert {f"r{n}" for n in range(30)} <= ids  # the path, whole
    assert len(ids - {f"r{n}" for n in range(30)}) < 10  # and a few of the forks nearest the root


def test_a_family_after_a_deleted_link_starts_below_it(db: Location) -> None:
    async def body(store: Store) -> Any:
        for response_id, parent in [("r1", None), ("r2", "r1"), ("r3", "r2")]:
            await store.save(record(response_id, parent, ["a"], "A"))
        await store.delete("r2", T)
        return await store.family("r3", T, 100)

    assert [(node.id, node.previous_response_id) for node in run(db, body)] == [("r3", "r2")]
