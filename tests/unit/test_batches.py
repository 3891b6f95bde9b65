"""Batching for bit-identical re-prefills (backends/local/batches.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tether.backends.local.batches import batches, merged, within


def test_singles_are_alone_and_the_rest_is_batched() -> None:
    assert list(batches(0, 10, [(4, 6)], size=3)) == [(0, 2), (2, 4), (4, 5), (5, 6), (6, 8), (8, 10)]


def test_no_lone_token_is_left_at_the_end_of_a_run() -> None:
    assert list(batches(0, 65, [], size=64)) == [(0, 63), (63, 65)]
    assert list(batches(3, 4, [], size=64)) == [(3, 4)]  # a run one long cannot be helped


def test_singles_outside_the_range_are_ignored() -> None:
    assert list(batches(5, 9, [(0, 3), (7, 8), (20, 30)], size=64)) == [(5, 7), (7, 8), (8, 9)]


@given(
    st.integers(0, 50),
    st.integers(0, 300),
    st.lists(st.tuples(st.integers(0, 400), st.integers(1, 20)), max_size=6),
    st.integers(3, 64),
)
def test_batches_cover_the_range_in_order_and_keep_singles_alone(
    start: int, length: int, raw: list[tuple[int, int]], size: int
) -> None:
    singles = merged((a, a + n) for a, n in raw)
    end = start + length
    ranges = list(batches(start, end, singles, size))
    assert [p for a, b in ranges for p in range(a, b)] == list(range(start, end))
    assert all(1 <= b - a <= size for a, b in ranges)
    single_positions = {p for a, b in singles for p in range(a, b)}
    assert all(b - a == 1 for a, b in ranges if a in single_positions)
    lone = [a for a, b in ranges if b - a == 1 and a not in single_positions]
    # A lone batch only where the run between singles (or the range's ends) is one token long.
    for a in lone:
        before = a == start or (a - 1) in single_positions
        after = a + 1 == end or (a + 1) in single_positions
        assert before and after


def test_merged_and_within() -> None:
    assert merged([(5, 7), (0, 2), (2, 3), (6, 9)]) == ((0, 3), (5, 9))
    assert within([(0, 3), (5, 9), (12, 14)], 7) == ((0, 3), (5, 7))
