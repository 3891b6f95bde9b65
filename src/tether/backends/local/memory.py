"""What the engine remembers of finished conversations, so a continuation prefills only what is new.

Two stores, both keyed by response id and both searchable by content:

- `TokenRecords`: the exact token ids of each conversation (its prompt, the model's own tokens as
  they were sampled, and the closing of its turn). A continuation's prompt is its parent's ids plus
  the rendering of the new items: history is never re-tokenised, so it cannot drift. A request
  that names no parent (a client resending its whole history) finds the record sharing the
  longest chain of blocks with it by address (`prefix.py`). Small (4 bytes a token), so many are
  kept.
- `KvSnapshots`: the model's KV state of a conversation (llama.cpp per-sequence state, ~23 KB a
  token for SmolLM2-135M) with the tokens it holds, taken when another conversation is about to
  displace it from the context; a prompt restores the one sharing its longest token prefix. Under
  a byte budget, evicted in this order, least recently used first within each: those idle past
  the `ttl` their request asked for (`prompt_cache_options.ttl`), then those a live connection is
  not about to continue (`hold`), then any; one evicted within its `ttl` is counted
  (`early_evictions`). A missing snapshot only costs a re-prefill from the token ids, never an
  error.

Both are used from the model and tokenizer threads and, for `hold`/`release`, from the event loop,
so each guards itself with a lock.
"""

from __future__ import annotations

import ctypes
import threading
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tether.backends.local.batches import Span
from tether.backends.local.prefix import Mark, common_prefix


@dataclass(frozen=True)
class TokenRecord:
    tokens: array[int]  # system block, every item, the response's own output, turn closed
    system_len: int  # tokens of the system block, which a continuation must share to reuse
    items: int  # context items these tokens cover, the response's own output included
    singles: tuple[Span, ...]  # positions evaluated one at a time (see batches.py)
    marks: tuple[Mark, ...]  # the address of each block the tokens cover, and where it ends
    origin: str | None  # the WebSocket connection it was made on (`Generation.origin`)


TOKEN_BYTES = 4  # a token id in a record (`array("i")`)
# A block's mark in a record and its entry in the address index (the record's tuple slot, a dict
# slot, a share of the digest): ~40 bytes measured with tracemalloc over a 200-turn conversation.
MARK_BYTES = 48


class TokenRecords:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._records: OrderedDict[str, TokenRecord] = OrderedDict()
        # address -> the records with a block chain of that address, oldest first
        self._addresses: dict[bytes, dict[str, None]] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, response_id: str, record: TokenRecord) -> None:
        with self._lock:
            self._drop(response_id)
            self._records[response_id] = record
            self._bytes += _size(record)
            for address, _ in record.marks:
                self._addresses.setdefault(address, {})[response_id] = None
            while self._bytes > self.budget_bytes and len(self._records) > 1:
                self._drop(next(iter(self._records)))

    def get(self, response_id: str | None) -> TokenRecord | None:
        with self._lock:
            record = self._records.get(response_id or "")
            if record is not None:
                self._records.move_to_end(response_id or "")
            return record

    def longest(self, addresses: Sequence[bytes]) -> tuple[TokenRecord, int] | None:
        """The most recent record sharing the longest chain of blocks with `addresses`, and how
        many blocks they share."""
        with self._lock:
            for shared in range(len(addresses), 0, -1):
                holders = self._addresses.get(addresses[shared - 1])
                if holders:
                    response_id = next(reversed(holders))
                    self._records.move_to_end(response_id)
                    return self._records[response_id], shared
            return None

    def _drop(self, response_id: str) -> None:
        record = self._records.pop(response_id, None)
        if record is None:
            return
        self._bytes -= _size(record)
        for address, _ in record.marks:
            holders = self._addresses[address]
            holders.pop(response_id, None)
            if not holders:
                del self._addresses[address]


def _size(record: TokenRecord) -> int:
    return len(record.tokens) * TOKEN_BYTES + len(record.marks) * MARK_BYTES


@dataclass(frozen=True)
class KvSnapshot:
    scope: str  # whose tokens these are (`Generation.cache_scope`)
    tokens: array[int]  # what the KV holds, position by position
    singles: tuple[Span, ...]  # which of them were evaluated one at a time
    data: ctypes.Array[ctypes.c_uint8]

    @property
    def size(self) -> int:
        return len(self.data)


class KvSnapshots:
    def __init__(self, budget_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget_bytes = budget_bytes
        self.bytes = 0
        self.evictions = 0
        self.early_evictions = 0  # evicted for room while still within their `ttl`
        self._snapshots: OrderedDict[str, KvSnapshot] = OrderedDict()
        self._ttl_s: dict[str, float] = {}
        self._kept_until: dict[str, float] = {}  # idle past this, a snapshot goes first
        self._held: set[str] = set()
        self._clock = clock
        self._lock = threading.Lock()

    def put(self, response_id: str, snapshot: KvSnapshot, ttl_s: float) -> None:
        """Keep `snapshot` of `response_id`, at least `ttl_s` seconds past its last use if the
        budget allows."""
        with self._lock:
            self._drop(response_id)
            if snapshot.size > self.budget_bytes:  # never kept, so not for its `ttl` either
                self.evictions += 1
                self.early_evictions += 1
                return
            self._snapshots[response_id] = snapshot
            self._ttl_s[response_id] = ttl_s
            self._used(response_id)
            self.bytes += snapshot.size
            while self.bytes > self.budget_bytes:
                victim = self._victim()
                self.early_evictions += self._kept_until[victim] > self._clock()
                self._drop(victim)
                self.evictions += 1

    def get(self, response_id: str | None) -> KvSnapshot | None:
        with self._lock:
            snapshot = self._snapshots.get(response_id or "")
            if snapshot is not None:
                self._used(response_id or "")
            return snapshot

    def __len__(self) -> int:
        return len(self._snapshots)

    def longest(self, scope: str, tokens: Sequence[int]) -> tuple[KvSnapshot, int] | None:
        """The snapshot of `scope` sharing the longest token prefix with `tokens`, and its length
        (the most recent on a tie); None when none shares a token."""
        wanted = np.asarray(tokens)  # once, not per snapshot: a prompt holds thousands
        with self._lock:
            best: tuple[str, KvSnapshot, int] | None = None
            for response_id, snapshot in reversed(self._snapshots.items()):
                if snapshot.scope != scope:
                    continue
                shared = common_prefix(snapshot.tokens, wanted)
                if shared > 0 and (best is None or shared > best[2]):
                    best = (response_id, snapshot, shared)
            if best is None:
                return None
            self._used(best[0])
            return best[1], best[2]

    def hold(self, response_id: str) -> None:
        with self._lock:
            self._held.add(response_id)

    def release(self, response_id: str) -> None:
        with self._lock:
            self._held.discard(response_id)

    def _used(self, response_id: str) -> None:
        self._snapshots.move_to_end(response_id)
        self._kept_until[response_id] = self._clock() + self._ttl_s[response_id]

    def _victim(self) -> str:
        """See the module: idle past its `ttl` and not held, else not held, else any (LRU)."""
        now = self._clock()
        order = list(self._snapshots)  # least recently used first
        expired = (rid for rid in order if self._kept_until[rid] <= now and rid not in self._held)
        return next(expired, next((rid for rid in order if rid not in self._held), order[0]))

    def _drop(self, response_id: str) -> None:
        snapshot = self._snapshots.pop(response_id, None)
        if snapshot is not None:
            self.bytes -= snapshot.size
            del self._ttl_s[response_id], self._kept_until[response_id]
