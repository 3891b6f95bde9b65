"""What the engine remembers of finished conversations, so a continuation prefills only what is new.

Two stores, both keyed by response id:

- `TokenRecords`: the exact token ids of each conversation (its prompt, the model's own tokens as
  they were sampled, and the closing of its turn). A continuation's prompt is its parent's ids plus
  the rendering of the new items: history is never re-tokenised, so it cannot drift. Small
  (4 bytes a token), so many are kept.
- `KvSnapshots`: the model's KV state of a conversation (llama.cpp per-sequence state, ~23 KB a
  token for SmolLM2-135M), taken when another conversation is about to displace it from the
  context and restored when it continues. An LRU under a byte budget; snapshots a live connection
  may continue from soon (`hold`) are evicted last. A missing snapshot only costs a re-prefill
  from the token ids, never an error.

Both are used from the model and tokenizer threads and, for `hold`/`release`, from the event loop,
so each guards itself with a lock.
"""

from __future__ import annotations

import ctypes
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass

import llama_cpp
from llama_cpp import Llama

from tether.backends.local.batches import Span

SEQUENCE = 0  # the engine runs one sequence per context


@dataclass(frozen=True)
class TokenRecord:
    tokens: array[int]  # system block, every item, the response's own output, turn closed
    system_len: int  # tokens of the system block, which a continuation must share to reuse
    items: int  # context items these tokens cover, the response's own output included
    singles: tuple[Span, ...]  # positions evaluated one at a time (see batches.py)


TOKEN_BYTES = 4  # a token id in a record (`array("i")`)


class TokenRecords:
    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._records: OrderedDict[str, TokenRecord] = OrderedDict()
        self._tokens = 0
        self._lock = threading.Lock()

    def put(self, response_id: str, record: TokenRecord) -> None:
        with self._lock:
            self._drop(response_id)
            self._records[response_id] = record
            self._tokens += len(record.tokens)
            while self._tokens > self.max_tokens and len(self._records) > 1:
                self._drop(next(iter(self._records)))

    def get(self, response_id: str | None) -> TokenRecord | None:
        with self._lock:
            record = self._records.get(response_id or "")
            if record is not None:
                self._records.move_to_end(response_id or "")
            return record

    def _drop(self, response_id: str) -> None:
        record = self._records.pop(response_id, None)
        if record is not None:
            self._tokens -= len(record.tokens)


@dataclass(frozen=True)
class KvSnapshot:
    n_tokens: int  # the KV covers the first n tokens of its conversation's record
    data: ctypes.Array[ctypes.c_uint8]

    @property
    def size(self) -> int:
        return len(self.data)


class KvSnapshots:
    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.bytes = 0
        self.evictions = 0
        self._snapshots: OrderedDict[str, KvSnapshot] = OrderedDict()
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def put(self, response_id: str, snapshot: KvSnapshot) -> None:
        with self._lock:
            self._drop(response_id)
            if snapshot.size > self.budget_bytes:
                self.evictions += 1
                return
            self._snapshots[response_id] = snapshot
            self.bytes += snapshot.size
            while self.bytes > self.budget_bytes:
                self._drop(self._victim())
                self.evictions += 1

    def get(self, response_id: str | None) -> KvSnapshot | None:
        with self._lock:
            snapshot = self._snapshots.get(response_id or "")
            if snapshot is not None:
                self._snapshots.move_to_end(response_id or "")
            return snapshot

    def __len__(self) -> int:
        return len(self._snapshots)

    def hold(self, response_id: str) -> None:
        with self._lock:
            self._held.add(response_id)

    def release(self, response_id: str) -> None:
        with self._lock:
            self._held.discard(response_id)

    def _victim(self) -> str:
        """The least recently used snapshot nobody holds, else the least recently used."""
        return next((rid for rid in self._snapshots if rid not in self._held), next(iter(self._snapshots)))

    def _drop(self, response_id: str) -> None:
        snapshot = self._snapshots.pop(response_id, None)
        if snapshot is not None:
            self.bytes -= snapshot.size


def capture(llm: Llama) -> KvSnapshot:
    """Copy the KV of the context's sequence (~6 ms for 1.5k tokens)."""
    size = llama_cpp.llama_state_seq_get_size(llm.ctx, SEQUENCE)
    data = (ctypes.c_uint8 * size)()
    llama_cpp.llama_state_seq_get_data(llm.ctx, data, size, SEQUENCE)
    return KvSnapshot(n_tokens=llm.n_tokens, data=data)


def restore(llm: Llama, snapshot: KvSnapshot, tokens: array[int] | list[int]) -> None:
    """Make the context hold `snapshot`, whose KV is that of `tokens[:snapshot.n_tokens]`."""
    llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(llm.ctx), SEQUENCE, -1, -1)
    if not llama_cpp.llama_state_seq_set_data(llm.ctx, snapshot.data, snapshot.size, SEQUENCE):
        llm.n_tokens = 0
        raise RuntimeError("llama.cpp refused the KV snapshot")
    llm.input_ids[: snapshot.n_tokens] = tokens[: snapshot.n_tokens]
    llm.n_tokens = snapshot.n_tokens
