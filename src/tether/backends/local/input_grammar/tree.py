"""What a custom tool's grammar says, whichever syntax it came in: a tree of these nodes."""

from __future__ import annotations

from dataclasses import dataclass


class Unsupported(ValueError):
    """The grammar uses something outside the subset; the message names it."""


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Chars:
    """A character class: any character in `ranges` (inclusive), or any not in them."""

    ranges: tuple[tuple[int, int], ...]
    negated: bool = False

    def __contains__(self, codepoint: int) -> bool:
        return any(lo <= codepoint <= hi for lo, hi in self.ranges) != self.negated


@dataclass(frozen=True)
class Sequence:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Choice:
    options: tuple[Node, ...]


@dataclass(frozen=True)
class Repeat:
    node: Node
    least: int
    most: int | None  # None: no bound


@dataclass(frozen=True)
class Reference:
    """A Lark rule or terminal, by name."""

    name: str


Node = Literal | Chars | Sequence | Choice | Repeat | Reference

DIGIT = Chars(((0x30, 0x39),))
WORD = Chars(((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)))
SPACE = Chars(((0x09, 0x0D), (0x20, 0x20)))
NEWLINE = Chars(((0x0A, 0x0A),))
