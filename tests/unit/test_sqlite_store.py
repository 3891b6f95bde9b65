"""The SQLite store on a real file: atomic records, chains, pagination, deletion."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tether.store.base import StoredResponse
from tether.store.sqlite import SqliteStore


def record(response_id: str, parent: str | None, inputs: list[str], output: str) -> StoredResponse:
    return StoredResponse(
        id=response_id,
        previous_response_id=parent,
        status="completed",
        created_at=1,
        response={"id": response_id, "status": "completed"},
        input_items=tuple({"id": f"{response_id}_{t}", "text": t} for t in inputs),
        output_items=({"id": f"{response_id}_out", "text": output},),
        events=({"type": "response.created", "sequence_number": 0},
                {"type": "response.completed", "sequence_number": 1}),
    )  # fmt: skip


def run(path: Path, body: Any) -> Any:
    async def main() -> Any:
        store = await SqliteStore(path).open()
        try:
            return await body(store)
        finally:
            await store.aclose()

    return asyncio.run(main())


def test_a_chain_reads_back_root_first(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> Any:
        await store.save(record("r1", None, ["a"], "A"))
        await store.save(record("r2", "r1", ["b", "c"], "B"))
        return await store.chain_items("r2")

    assert [i["text"] for i in run(tmp_path / "s.db", body)] == ["a", "A", "b", "c", "B"]


def test_data_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    run(path, lambda store: store.save(record("r1", None, ["a"], "A")))
    assert run(path, lambda store: store.get("r1")) == {"id": "r1", "status": "completed"}
    assert [e["sequence_number"] for e in run(path, lambda s: s.events("r1", 0))] == [1]


def test_input_items_paginate_with_a_cursor(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> Any:
        await store.save(record("r1", None, list("abcde"), "X"))
        first = await store.input_items("r1", after=None, limit=2, order="asc")
        second = await store.input_items("r1", after=first.items[-1]["id"], limit=2, order="asc")
        newest = await store.input_items("r1", after=None, limit=5, order="desc")
        return first, second, newest

    first, second, newest = run(tmp_path / "s.db", body)
    assert [i["text"] for i in first.items] == ["a", "b"] and first.has_more
    assert [i["text"] for i in second.items] == ["c", "d"] and second.has_more
    assert [i["text"] for i in newest.items] == list("edcba") and not newest.has_more


def test_deleting_a_link_breaks_the_chain_beyond_it(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> Any:
        await store.save(record("r1", None, ["a"], "A"))
        await store.save(record("r2", "r1", ["b"], "B"))
        deleted = await store.delete("r1")
        return deleted, await store.get("r1"), await store.chain_items("r2"), await store.delete("r1")

    assert run(tmp_path / "s.db", body) == (True, None, None, False)


def test_find_item_returns_the_latest_copy_of_an_id(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> Any:
        await store.save(record("r1", None, ["a"], "A"))
        return await store.find_item("r1_out"), await store.find_item("nope")

    assert run(tmp_path / "s.db", body) == ({"id": "r1_out", "text": "A"}, None)
