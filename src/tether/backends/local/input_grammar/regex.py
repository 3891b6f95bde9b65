"""The regex subset (see the package's docstring) read into a `tree`."""

from __future__ import annotations

import re

from tether.backends.local.input_grammar.tree import (
    DIGIT,
    NEWLINE,
    SPACE,
    WORD,
    Chars,
    Choice,
    Literal,
    Node,
    Repeat,
    Sequence,
    Unsupported,
)

_CLASS_ESCAPES = {"d": DIGIT, "w": WORD, "s": SPACE}
CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a", "0": "\0"}
_ANCHORS = ("A", "Z", "z")
_QUANTIFIER = re.compile(r"\{(\d+)(,(\d*))?\}")


class _Regex:
    """A recursive-descent reader of the regex subset."""

    def __init__(self, pattern: str, dotall: bool = False) -> None:
        self.text = pattern
        self.at = 0
        self.dotall = dotall

    def parse(self) -> Node:
        node = self._choice()
        if self.at != len(self.text):
            raise Unsupported(f"regex: unbalanced ')' at {self.at} in {self.text!r}")
        return node

    def _peek(self, ahead: int = 0) -> str:
        index = self.at + ahead
        return self.text[index] if index < len(self.text) else ""

    def _choice(self) -> Node:
        options = [self._sequence()]
        while self._peek() == "|":
            self.at += 1
            options.append(self._sequence())
        return options[0] if len(options) == 1 else Choice(tuple(options))

    def _sequence(self) -> Node:
        parts: list[Node] = []
        while self._peek() not in ("", "|", ")"):
            atom = self._atom()
            if atom is not None:
                parts.append(self._quantified(atom))
        return parts[0] if len(parts) == 1 else Sequence(tuple(parts))

    def _quantified(self, atom: Node) -> Node:
        while True:
            char = self._peek()
            if char in ("*", "+", "?"):
                self.at += 1
                atom = Repeat(atom, 1 if char == "+" else 0, 1 if char == "?" else None)
            elif char == "{" and (match := _QUANTIFIER.match(self.text, self.at)):
                self.at = match.end()
                least = int(match[1])
                most = least if match[2] is None else (int(match[3]) if match[3] else None)
                atom = Repeat(atom, least, most)
            else:
                return atom
            if self._peek() == "?":  # lazy: the same strings match
                self.at += 1
            elif self._peek() == "+":
                raise Unsupported("regex: possessive quantifiers")

    def _atom(self) -> Node | None:
        char = self._peek()
        self.at += 1
        if char == "(":
            return self._group()
        if char == "[":
            return self._class()
        if char == ".":
            return Chars((), negated=True) if self.dotall else Chars(NEWLINE.ranges, negated=True)
        if char in ("^", "$"):
            return None
        if char == "\\":
            return self._escape(in_class=False)
        if char in ("*", "+", "?"):
            raise Unsupported(f"regex: nothing to repeat at {self.at - 1} in {self.text!r}")
        return Literal(char)

    def _group(self) -> Node:
        if self._peek() == "?":
            if self.text.startswith("?:", self.at):
                self.at += 2
            elif self.text.startswith("?P<", self.at) or (
                self.text.startswith("?<", self.at) and self._peek(2) not in ("=", "!")
            ):
                self.at = self.text.index(">", self.at) + 1
            else:
                raise Unsupported(f"regex: {_special_group(self.text[self.at :])}")
        node = self._choice()
        if self._peek() != ")":
            raise Unsupported(f"regex: an unclosed group in {self.text!r}")
        self.at += 1
        return node

    def _escape(self, in_class: bool) -> Node | None:
        char = self._peek()
        self.at += 1
        if char in _CLASS_ESCAPES:
            return _CLASS_ESCAPES[char]
        if char.lower() in _CLASS_ESCAPES:
            return Chars(_CLASS_ESCAPES[char.lower()].ranges, negated=True)
        if char in CHAR_ESCAPES:
            return Literal(CHAR_ESCAPES[char])
        if char in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[char]
            digits = self.text[self.at : self.at + width]
            self.at += width
            return Literal(chr(int(digits, 16)))
        if char in _ANCHORS and not in_class:
            return None
        if char == "b" and in_class:
            return Literal("\b")
        if char.isalnum() or char == "":
            raise Unsupported(f"regex: the escape '\\{char}'")
        return Literal(char)

    def _class(self) -> Chars:
        negated = self._peek() == "^"
        if negated:
            self.at += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while self._peek() != "]" or first:
            if self._peek() == "":
                raise Unsupported(f"regex: an unclosed class in {self.text!r}")
            first = False
            low = self._class_member()
            if isinstance(low, Chars):
                if low.negated:
                    raise Unsupported("regex: a negated escape (\\D, \\W, \\S) inside a class")
                ranges.extend(low.ranges)
                continue
            if self._peek() == "-" and self._peek(1) not in ("]", ""):
                self.at += 1
                high = self._class_member()
                if isinstance(high, Chars):
                    raise Unsupported("regex: a class escape as the end of a range")
                ranges.append((low, high))
            else:
                ranges.append((low, low))
        self.at += 1
        return Chars(tuple(ranges), negated)

    def _class_member(self) -> int | Chars:
        char = self._peek()
        self.at += 1
        if char != "\\":
            return ord(char)
        escaped = self._escape(in_class=True)
        if isinstance(escaped, Literal):
            return ord(escaped.text)
        if isinstance(escaped, Chars):
            return escaped
        raise Unsupported(f"regex: the escape in a class at {self.at} in {self.text!r}")


def _special_group(rest: str) -> str:
    """What a `(?…` group that is not a plain or named one is."""
    kinds = {"?=": "lookahead", "?!": "lookahead", "?<=": "lookbehind", "?<!": "lookbehind",
             "?>": "atomic groups", "?(": "conditionals"}  # fmt: skip
    for opening, what in kinds.items():
        if rest.startswith(opening):
            return f"{what} '({opening}'"
    return f"inline flags '({rest[:3]}'"


def parse_regex(pattern: str, flags: str = "") -> Node:
    unknown = set(flags) - {"s", "m", "u"}
    if unknown:
        raise Unsupported(f"regex: the flags {''.join(sorted(unknown))!r}")
    return _Regex(pattern, dotall="s" in flags).parse()
