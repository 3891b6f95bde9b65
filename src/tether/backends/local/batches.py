"""How to feed tokens to the model so that recomputed KV is bit-identical to the original.

Measured on this engine (SmolLM2-135M Q4_1, llama.cpp CPU): the logits after a prompt do not
depend on how its tokens are grouped into batches of two or more, but a token evaluated alone
(as every decoded token is) gets slightly different numbers, enough to change a greedy answer a
few turns later. "Alone" is per sequence: other sequences' tokens in the same batch change
nothing (`sequences.py`). So a conversation remembers the spans it evaluated one token at a time, and a
re-prefill replays those singly and batches the rest, never leaving a batch of one. A turn then
gives the same greedy output whether its KV was resident, restored or recomputed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

Span = tuple[int, int]  # [start, end) token positions


def batches(start: int, end: int, singles: Iterable[Span], size: int) -> Iterator[Span]:
    """Ranges covering [start, end) in order: each single position alone, the rest in batches
    of at most `size`. A batch of one happens only where a run between singles is one long."""
    position = start
    for first, last in sorted(singles):
        first, last = max(first, position), min(last, end)
        if first >= last:
            continue
        yield from _runs(position, first, size)
        yield from ((p, p + 1) for p in range(first, last))
        position = last
    yield from _runs(position, end, size)


def _runs(start: int, end: int, size: int) -> Iterator[Span]:
    position = start
    while position < end:
        length = min(size, end - position)
        if end - (position + length) == 1 and length > 2:  # leave no lone token for last
            length -= 1
        yield position, position + length
        position += length


def merged(spans: Iterable[Span]) -> tuple[Span, ...]:
    """Sorted, with touching and overlapping spans joined."""
    result: list[Span] = []
    for first, last in sorted(spans):
        if result and first <= result[-1][1]:
            result[-1] = (result[-1][0], max(result[-1][1], last))
        else:
            result.append((first, last))
    return tuple(result)


def within(spans: Iterable[Span], end: int) -> tuple[Span, ...]:
    """The parts of `spans` before `end`."""
    return tuple((first, min(last, end)) for first, last in spans if first < end)
