"""The engine's KV context: several conversations resident at once, one llama.cpp sequence each.

The context is made beside `Llama` (which keeps the weights and the vocabulary) with one KV stream
per sequence (`kv_unified` off), each as long as the engine's context window. Measured on this
engine: a sequence's logits are bitwise those of a single-sequence context, and a row's logits do
not depend on what other sequences share its batch (another's decode step or a prefill slice).
Only the grouping of one sequence's own tokens matters (`batches.py`), so steps of different
conversations can share one `llama_decode`.

A model with sliding-window attention (Gemma 3: 512 positions) keeps, in its windowed layers,
only the KV of the latest positions a sequence reached. A prefix of what the sequence holds is
then worth reusing only while the window before its end is still there (`servable`); once the
sequence ran past it, the prefix is prefilled again (llama-server decides the same way).
"""

from __future__ import annotations

import ctypes
from array import array
from collections.abc import Sequence as Tokens
from dataclasses import dataclass, field

import llama_cpp
from llama_cpp import Llama

from tether.backends.local.batches import Span, within
from tether.backends.local.memory import KvSnapshot

# Tokens one `llama_decode` may take: a prefill slice and every sequence's decode step.
_BATCH_TOKENS = 512


@dataclass(eq=False)
class Sequence:
    """One conversation slot of the context; used from the model thread only."""

    id: int
    tokens: list[int] = field(default_factory=list)  # what its KV holds, position by position
    singles: tuple[Span, ...] = ()  # the positions it evaluated one at a time
    scope: str | None = None  # whose tokens it holds (`Generation.cache_scope`)
    resident: str | None = None  # the response whose finished conversation it holds
    resident_ttl_s: float = 0.0  # how long its request asked it be kept at least (`ttl`)
    busy: bool = False  # a generation or warm-up runs on it
    used: int = 0  # when it was last given work (a counter): the least recent is displaced first


@dataclass(frozen=True)
class Step:
    """Tokens of one sequence to evaluate at its next positions in a shared batch."""

    sequence: Sequence
    tokens: Tokens[int]
    logits: bool  # keep the logits of the last one, to sample from


class KvContext:
    """Close with `close()`; `Llama` must outlive it (the context borrows its weights)."""

    def __init__(self, llm: Llama, sequences: int, n_ctx: int, threads: int) -> None:
        params = llama_cpp.llama_context_default_params()
        for name, _ in params._fields_:  # what `Llama` chose (flash attention off, KV types, ...)
            setattr(params, name, getattr(llm.context_params, name))
        params.n_ctx = sequences * n_ctx
        params.n_seq_max = sequences
        params.kv_unified = False
        # Windowed layers keep only their window (llama-cpp-python's default keeps everything:
        # Gemma 3 270M's context at 4 x 8,192 tokens takes 586 MiB so, 165 MiB windowed); what
        # that costs in reuse is `servable`'s.
        params.swa_full = False
        params.n_batch = params.n_ubatch = _BATCH_TOKENS
        params.n_threads = params.n_threads_batch = threads
        ctx = llama_cpp.llama_init_from_model(llm.model, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp cannot make a context of {sequences} sequences of {n_ctx} tokens")
        self.ctx = ctx
        self.n_ctx = n_ctx  # tokens each sequence holds
        self.sequences = [Sequence(i) for i in range(sequences)]
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._window = llama_cpp.llama_model_n_swa(llm.model)  # 0 without sliding-window attention
        self._batch = llama_cpp.llama_batch_init(_BATCH_TOKENS, 0, 1)

    def decode(self, steps: list[Step]) -> list[int]:
        """Evaluate every step in one batch; each sequence then holds its step's tokens too.

        Returns, for each step, the batch row of its logits (-1 where none were kept)."""
        batch, rows, n = self._batch, [], 0
        for step in steps:
            start = len(step.sequence.tokens)
            for offset, token in enumerate(step.tokens):
                batch.token[n], batch.pos[n] = token, start + offset
                batch.n_seq_id[n], batch.seq_id[n][0] = 1, step.sequence.id
                batch.logits[n] = step.logits and offset == len(step.tokens) - 1
                n += 1
            rows.append(n - 1 if step.logits else -1)
        batch.n_tokens = n
        status = llama_cpp.llama_decode(self.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status}")
        for step in steps:
            sequence = step.sequence
            if len(step.tokens) == 1:  # tokens only ever join at the end: the spans stay sorted
                sequence.singles = _extended(sequence.singles, len(sequence.tokens))
            sequence.tokens += step.tokens
        return rows

    def servable(self, sequence: Sequence, length: int) -> int:
        """How many of the sequence's first `length` tokens its KV can serve a prompt: all, unless
        the sliding window before `length` is gone (the sequence ran past it), then none."""
        if not self._window or length == 0:
            return length
        oldest = llama_cpp.llama_memory_seq_pos_min(self._memory, sequence.id)
        return length if 0 <= oldest <= max(0, length - self._window) else 0

    def forget_from(self, sequence: Sequence, position: int) -> None:
        """Drop the sequence's KV from `position` on: it keeps exactly its first tokens."""
        llama_cpp.llama_memory_seq_rm(self._memory, sequence.id, position, -1)
        del sequence.tokens[position:]
        sequence.singles = within(sequence.singles, position)

    def copy(self, source: Sequence, target: Sequence, length: int) -> None:
        """Make `target` hold the first `length` tokens of `source` (a copy inside the context,
        ~0.2 ms: across KV streams llama.cpp copies whole streams, then the rest is dropped)."""
        llama_cpp.llama_memory_seq_cp(self._memory, source.id, target.id, -1, -1)
        target.tokens = list(source.tokens)
        target.singles = source.singles
        self.forget_from(target, length)

    def capture(self, sequence: Sequence) -> KvSnapshot:
        """Copy a sequence's KV out (~6 ms for 1.5k tokens)."""
        assert sequence.scope is not None, "an empty sequence has nothing to snapshot"
        size = llama_cpp.llama_state_seq_get_size(self.ctx, sequence.id)
        data = (ctypes.c_uint8 * size)()
        llama_cpp.llama_state_seq_get_data(self.ctx, data, size, sequence.id)
        return KvSnapshot(sequence.scope, array("i", sequence.tokens), sequence.singles, data)

    def restore(self, sequence: Sequence, snapshot: KvSnapshot) -> None:
        """Make the sequence hold `snapshot`."""
        self.forget_from(sequence, 0)
        if not llama_cpp.llama_state_seq_set_data(self.ctx, snapshot.data, snapshot.size, sequence.id):
            raise RuntimeError("llama.cpp refused the KV snapshot")
        sequence.tokens = snapshot.tokens.tolist()
        sequence.singles = snapshot.singles

    def set_threads(self, threads: int) -> None:
        llama_cpp.llama_set_n_threads(self.ctx, threads, threads)

    def close(self) -> None:
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self.ctx)


def _extended(singles: tuple[Span, ...], position: int) -> tuple[Span, ...]:
    """`singles` and the position after them, joined to the last span when it touches."""
    if singles and singles[-1][1] == position:
        return (*singles[:-1], (singles[-1][0], position + 1))
    return (*singles, (position, position + 1))
