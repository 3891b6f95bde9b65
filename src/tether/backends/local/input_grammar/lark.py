"""The Lark subset (see the package's docstring) read into a `tree` per rule."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from tether.backends.local.input_grammar.regex import CHAR_ESCAPES, parse_regex
from tether.backends.local.input_grammar.tree import (
    Chars,
    Choice,
    Literal,
    Node,
    Reference,
    Repeat,
    Sequence,
    Unsupported,
)

# Lark's `common` terminals that grammars import, written in the subset.
_COMMON = {
    "LF": r'"\n"',
    "CR": r'"\r"',
    "NEWLINE": "(CR? LF)+",
    "WS": r"/[ \t\f\r\n]/+",
    "WS_INLINE": r'(" "|/\t/)+',
    "DIGIT": '"0".."9"',
    "HEXDIGIT": '"a".."f"|"A".."F"|DIGIT',
    "INT": "DIGIT+",
    "SIGNED_INT": '["+"|"-"] INT',
    "DECIMAL": 'INT "." INT? | "." INT',
    "NUMBER": "FLOAT | INT",
    "FLOAT": "INT _EXP | DECIMAL _EXP?",
    "_EXP": '("e"|"E") SIGNED_INT',
    "SIGNED_NUMBER": '["+"|"-"] NUMBER',
    "LCASE_LETTER": '"a".."z"',
    "UCASE_LETTER": '"A".."Z"',
    "LETTER": "UCASE_LETTER | LCASE_LETTER",
    "WORD": "LETTER+",
    "CNAME": '("_"|LETTER) ("_"|LETTER|DIGIT)*',
    "ESCAPED_STRING": r'"\"" /([^"\\]|\\.)*/ "\""',
}

_TOKEN = re.compile(
    r"""
    (?P<comment>//[^\n]*)
  | (?P<newline>\n)
  | (?P<space>[ \t\r]+)
  | (?P<directive>%[a-z]+)
  | (?P<string>"(?:[^"\\\n]|\\.)*"i?)
  | (?P<regex>/(?![/*])(?:[^/\\\n]|\\.)+/[a-z]*)
  | (?P<arrow>->)
  | (?P<range>\.\.)
  | (?P<name>[?!]?[_A-Za-z][_A-Za-z0-9]*(?:\.[0-9-]+)?)
  | (?P<number>[0-9]+)
  | (?P<op>[:|()\[\]?*+~.,])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokens(source: str) -> Iterator[_Token]:
    at = 0
    while at < len(source):
        match = _TOKEN.match(source, at)
        if match is None:
            raise Unsupported(f"lark: cannot read {source[at : at + 20]!r}")
        at = match.end()
        kind = match.lastgroup or ""
        if kind not in ("comment", "space"):
            yield _Token(kind, match.group())


class _Lark:
    def __init__(self, source: str) -> None:
        self.tokens = list(_tokens(source))
        self.at = 0
        self.depth = 0  # brackets open: a definition goes on across lines inside them
        self.rules: dict[str, Node] = {}
        self.imports: set[str] = set()

    def parse(self) -> dict[str, Node]:
        while self.at < len(self.tokens):
            token = self.tokens[self.at]
            if token.kind == "newline":
                self.at += 1
            elif token.kind == "directive":
                self._directive()
            elif token.kind == "name":
                self._definition()
            else:
                raise Unsupported(f"lark: unexpected {token.text!r}")
        for name in self.imports:
            self._import(name)
        return self.rules

    def _peek(self) -> _Token | None:
        while self.depth and self.at < len(self.tokens) and self.tokens[self.at].kind == "newline":
            self.at += 1
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self, text: str) -> None:
        token = self._peek()
        if token is None or token.text != text:
            raise Unsupported(f"lark: expected {text!r}, found {token.text if token else 'the end'!r}")
        self.at += 1

    def _line(self) -> list[_Token]:
        line: list[_Token] = []
        while (token := self._peek()) is not None and token.kind != "newline":
            line.append(token)
            self.at += 1
        return line

    def _directive(self) -> None:
        directive = self.tokens[self.at].text
        self.at += 1
        line = [token.text for token in self._line()]
        if directive != "%import":
            raise Unsupported(f"lark: the directive {directive}")
        words = "".join(line)
        match = re.fullmatch(r"common\.([A-Z_]+)(?:->([A-Za-z_]+))?|common\(([A-Z_,]+)\)", words)
        if match is None:
            raise Unsupported(f"lark: the import {' '.join(line)!r} (only `common` terminals)")
        if match[1]:
            self.imports.add(match[1])
            if match[2]:
                self.rules[match[2]] = Reference(match[1])
        else:
            self.imports.update(match[3].split(","))

    def _import(self, name: str) -> None:
        if name in self.rules:
            return
        if name not in _COMMON:
            raise Unsupported(f"lark: the common terminal {name}")
        nested = _Lark(f"{name}: {_COMMON[name]}")
        definitions = nested.parse()
        self.rules.update(definitions)
        for reference in _references(definitions[name]):
            if reference in _COMMON:
                self._import(reference)

    def _definition(self) -> None:
        name = self.tokens[self.at].text.lstrip("?!").split(".")[0]
        self.at += 1
        if (token := self._peek()) is not None and token.text == "{":
            raise Unsupported("lark: templates")
        self._take(":")
        self.rules[name] = self._expansions(top=True)

    def _expansions(self, top: bool = False) -> Node:
        options = [self._alias()]
        while True:
            token = self._peek()
            if top and token is not None and token.kind == "newline":
                following = self._next_meaningful()
                if following is None or following.text != "|":
                    break
                while (token := self._peek()) is not None and token.kind == "newline":
                    self.at += 1
                continue
            if token is None or token.text != "|":
                break
            self.at += 1
            options.append(self._alias())
        return options[0] if len(options) == 1 else Choice(tuple(options))

    def _next_meaningful(self) -> _Token | None:
        index = self.at
        while index < len(self.tokens) and self.tokens[index].kind == "newline":
            index += 1
        return self.tokens[index] if index < len(self.tokens) else None

    def _alias(self) -> Node:
        node = self._expansion()
        token = self._peek()
        if token is not None and token.kind == "arrow":
            self.at += 2  # the alias names the tree's node; the text matched is the same
        return node

    def _expansion(self) -> Node:
        parts: list[Node] = []
        while (token := self._peek()) is not None and (
            token.kind in ("string", "regex", "name") or token.text in ("(", "[")
        ):
            parts.append(self._quantified(self._atom()))
        return parts[0] if len(parts) == 1 else Sequence(tuple(parts))

    def _quantified(self, atom: Node) -> Node:
        while (token := self._peek()) is not None and token.text in ("?", "*", "+", "~"):
            self.at += 1
            if token.text == "~":
                least = int(self._number())
                most = least
                if (after := self._peek()) is not None and after.kind == "range":
                    self.at += 1
                    most = int(self._number())
                atom = Repeat(atom, least, most)
            else:
                atom = Repeat(atom, 1 if token.text == "+" else 0, 1 if token.text == "?" else None)
        return atom

    def _number(self) -> str:
        token = self._peek()
        if token is None or token.kind != "number":
            raise Unsupported("lark: expected a number after '~'")
        self.at += 1
        return token.text

    def _atom(self) -> Node:
        token = self.tokens[self.at]
        self.at += 1
        if token.text in ("(", "["):
            self.depth += 1
            node = self._expansions()
            self._take(")" if token.text == "(" else "]")
            self.depth -= 1
            return node if token.text == "(" else Repeat(node, 0, 1)
        if token.kind == "name":
            return Reference(token.text)
        if token.kind == "regex":
            body, _, flags = token.text[1:].rpartition("/")
            return parse_regex(body.replace("\\/", "/"), flags)
        text = _lark_string(token.text)
        if (after := self._peek()) is not None and after.kind == "range":
            self.at += 1
            end = self.tokens[self.at]
            self.at += 1
            high = _lark_string(end.text)
            if len(text) != 1 or len(high) != 1:
                raise Unsupported("lark: a range needs one character at each end")
            return Chars(((ord(text), ord(high)),))
        return Literal(text)


def _lark_string(token: str) -> str:
    if token.endswith("i"):
        raise Unsupported("lark: case-insensitive strings")
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: CHAR_ESCAPES.get(m[1], m[1]), body)


def _references(node: Node) -> Iterator[str]:
    if isinstance(node, Reference):
        yield node.name
    elif isinstance(node, Sequence):
        for part in node.parts:
            yield from _references(part)
    elif isinstance(node, Choice):
        for option in node.options:
            yield from _references(option)
    elif isinstance(node, Repeat):
        yield from _references(node.node)


def parse_lark(source: str) -> dict[str, Node]:
    """Every rule and terminal, by name; `start` among them."""
    rules = _Lark(source).parse()
    if "start" not in rules:
        raise Unsupported("lark: no rule 'start'")
    for node in rules.values():
        for name in _references(node):
            if name not in rules:
                raise Unsupported(f"lark: '{name}' is used but never defined")
    return rules
