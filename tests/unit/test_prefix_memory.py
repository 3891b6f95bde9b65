"""What the local engine remembers, searched by content: token records by their chain of block
addresses, KV snapshots by token prefix, each within its tenant."""

from __future__ import annotations

import ctypes
from array import array

from tether.backends.local.chatml import Block
from tether.backends.local.memory import (
    MARK_BYTES,
    TOKEN_BYTES,
    KvSnapshot,
    KvSnapshots,
    TokenRecord,
    TokenRecords,
)
from tether.backends.local.prefix import addresses, common_prefix, following

SYSTEM = Block("system", "You are terse.")
ASK = Block("user", "Name a fruit.")
ANSWER = Block("assistant", "Apple.")
MORE = Block("user", "Another?")


def record(scope: str, chain: list[Block], tokens: int = 10) -> TokenRecord:
    marks = tuple((a, (i + 1) * tokens // len(chain)) for i, a in enumerate(addresses(scope, chain)))
    return TokenRecord(array("i", range(tokens)), 2, len(chain) - 1, (), marks, None)


def test_an_address_names_the_whole_chain_and_the_tenant() -> None:
    alice = addresses("alice", [SYSTEM, ASK, ANSWER])
    assert addresses("alice", [SYSTEM, ASK]) == alice[:2]  # a chain's prefix has its prefix's addresses
    assert following(alice[1], ANSWER) == alice[2]
    assert addresses("bob", [SYSTEM, ASK, ANSWER])[0] != alice[0]  # another tenant shares none
    assert addresses("alice", [SYSTEM, ANSWER])[1] != alice[1]  # order matters
    assert addresses("alice", [SYSTEM, Block("assistant", "Name a fruit.")])[1] != alice[1]  # so do roles


def test_the_record_sharing_the_longest_chain_is_found() -> None:
    records = TokenRecords(1 << 20)
    records.put("first", record("alice", [SYSTEM, ASK, ANSWER]))
    records.put("other", record("alice", [SYSTEM, Block("user", "Something else.")]))
    wanted = addresses("alice", [SYSTEM, ASK, ANSWER, MORE])
    found = records.longest(wanted)
    assert found is not None and found[1] == 3 and found[0] is records.get("first")
    only_system = records.longest(addresses("alice", [SYSTEM, Block("user", "New.")]))
    assert only_system is not None and only_system[1] == 1  # the instructions are shared
    assert records.longest(addresses("bob", [SYSTEM, ASK, ANSWER, MORE])) is None


def test_an_evicted_record_leaves_no_address_behind_and_marks_count_against_the_budget() -> None:
    one = record("alice", [SYSTEM, ASK, ANSWER])
    size = len(one.tokens) * TOKEN_BYTES + len(one.marks) * MARK_BYTES
    records = TokenRecords(size)  # room for exactly one
    records.put("first", one)
    records.put("second", record("alice", [SYSTEM, MORE]))
    assert records.get("first") is None
    assert records.longest(addresses("alice", [SYSTEM, ASK, ANSWER])) == (records.get("second"), 1)


TTL = 30 * 60.0


def snapshot(scope: str, tokens: list[int]) -> KvSnapshot:
    return KvSnapshot(scope, array("i", tokens), (), (ctypes.c_uint8 * 8)())


def test_the_snapshot_sharing_the_longest_token_prefix_of_the_tenant_is_found() -> None:
    snapshots = KvSnapshots(1 << 20)
    snapshots.put("short", snapshot("alice", [1, 2, 3]), TTL)
    snapshots.put("long", snapshot("alice", [1, 2, 3, 4, 5, 9]), TTL)
    snapshots.put("bobs", snapshot("bob", [1, 2, 3, 4, 5, 6, 7]), TTL)
    found = snapshots.longest("alice", [1, 2, 3, 4, 5, 6, 7])
    assert found is not None and found[1] == 5 and list(found[0].tokens) == [1, 2, 3, 4, 5, 9]
    assert snapshots.longest("carol", [1, 2, 3]) is None
    assert snapshots.longest("alice", [7, 7]) is None


def test_snapshots_idle_past_their_ttl_go_first_and_one_evicted_within_it_is_counted() -> None:
    """`prompt_cache_options.ttl`: a snapshot is kept at least that long after its last use when
    the budget allows; the budget still wins, and says so."""
    now = [0.0]
    snapshots = KvSnapshots(24, clock=lambda: now[0])  # room for three 8-byte snapshots
    snapshots.put("half-hour", snapshot("alice", [1]), 30 * 60)
    snapshots.put("half-day", snapshot("alice", [2]), 12 * 3600)
    snapshots.put("recent", snapshot("alice", [3]), 30 * 60)
    now[0] = 31 * 60.0  # the first's ttl has passed, the others' not ("recent" was used since)
    assert snapshots.get("recent") is not None
    snapshots.put("new", snapshot("alice", [4]), 30 * 60)
    assert snapshots.get("half-hour") is None and snapshots.early_evictions == 0
    snapshots.put("newer", snapshot("alice", [5]), 30 * 60)  # all within their ttl: LRU, counted
    assert snapshots.get("half-day") is None and snapshots.early_evictions == 1
    assert snapshots.evictions == 2


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix(array("i", [1, 2]), [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
