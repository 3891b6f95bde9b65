"""The chain tree as the inspector draws it (`inspector/views.tree_rows`): depth first, a fork's
branches one level in, a chain without forks straight down."""

from __future__ import annotations

from tether.inspector.views import tree_rows
from tether.store.base import Relative


def relative(response_id: str, parent: str | None, created_at: int = 0) -> Relative:
    return Relative(response_id, parent, "completed", created_at)


def drawn(family: list[Relative], selected: str = "") -> list[tuple[str, int, bool]]:
    return [(row.response.id, row.level, row.branch) for row in tree_rows(family, selected)]


def test_a_chain_without_forks_goes_straight_down() -> None:
    family = [relative(f"r{n}", f"r{n - 1}" if n else None, n) for n in range(5)]
    assert drawn(family[::-1]) == [(f"r{n}", 0, False) for n in range(5)]


def test_each_branch_of_a_fork_is_one_level_in_in_the_order_made() -> None:
    family = [relative("a", None, 0), relative("c", "a", 2), relative("b", "a", 1), relative("b2", "b", 3),
              relative("c1", "c", 4), relative("c2", "c", 5)]  # fmt: skip
    assert drawn(family) == [
        ("a", 0, False),
        ("b", 1, True),
        ("b2", 1, False),  # b's one continuation, straight down
        ("c", 1, True),
        ("c1", 2, True),
        ("c2", 2, True),
    ]


def test_a_response_whose_parent_is_not_in_the_family_is_a_root() -> None:
    rows = tree_rows([relative("orphan", "deleted"), relative("next", "orphan")], "next")
    assert [(row.response.id, row.level, row.selected) for row in rows] == [
        ("orphan", 0, False),
        ("next", 0, True),
    ]


def test_a_chain_thousands_long_is_drawn_without_recursion() -> None:
    family = [relative(f"r{n}", f"r{n - 1}" if n else None, n) for n in range(5000)]
    assert len(tree_rows(family, "r4999")) == 5000
