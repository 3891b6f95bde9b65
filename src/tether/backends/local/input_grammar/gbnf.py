"""A `tree` written as GBNF over the characters of the JSON string the model writes the input in."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator

from tether.backends.local.input_grammar.lark import parse_lark
from tether.backends.local.input_grammar.regex import parse_regex
from tether.backends.local.input_grammar.tree import (
    Chars,
    Choice,
    Literal,
    Node,
    Reference,
    Sequence,
    Unsupported,
)
from tether.protocol.tools import InputFormat

# How JSON writes the characters a string cannot hold as they are (RFC 8259 §7), as Python's
# `json.dumps` does: these by a short escape, the other controls as `\u00xx`.
_SHORT_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
_CONTROLS = (0x00, 0x1F)
_NOT_PLAIN = ((0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C))  # what a JSON string never holds as it is
# What GBNF needs escaped: in a literal, the quote and the backslash; in a class, also its brackets
# and, as `\x`, '-' and '^' (its reader knows no `\-`).
_IN_LITERAL = {'"': '\\"', "\\": "\\\\"}
_IN_CLASS = {**_IN_LITERAL, "[": "\\[", "]": "\\]", "-": "\\x2D", "^": "\\x5E"}


def _json_char(codepoint: int) -> str:
    if codepoint in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[codepoint]
    return f"\\u{codepoint:04x}" if codepoint <= _CONTROLS[1] else chr(codepoint)


def _gbnf_char(char: str, escapes: dict[str, str]) -> str:
    if char in escapes:
        return escapes[char]
    if unicodedata.category(char).startswith("C"):  # controls and the like: by code
        return f"\\x{ord(char):02X}" if ord(char) < 0x100 else f"\\U{ord(char):08X}"
    return char


def _gbnf_literal(text: str) -> str:
    return '"' + "".join(_gbnf_char(char, _IN_LITERAL) for char in text) + '"'


class _Gbnf:
    """Writes the rules; a character class with escapes becomes a rule of its own, written once."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self.classes: dict[Chars, str] = {}

    def write(self, node: Node) -> str:
        if isinstance(node, Literal):
            return _gbnf_literal("".join(_json_char(ord(char)) for char in node.text))
        if isinstance(node, Chars):
            return self._class(node)
        if isinstance(node, Reference):
            return rule_name(node.name)
        if isinstance(node, Sequence):
            return "(" + " ".join(self.write(part) for part in node.parts) + ")" if node.parts else '""'
        if isinstance(node, Choice):
            return "(" + " | ".join(self.write(option) for option in node.options) + ")"
        inner = f"({self.write(node.node)})"
        bounds = (node.least, node.most)
        suffix = {(0, None): "*", (1, None): "+", (0, 1): "?"}.get(bounds)
        if suffix is None:
            suffix = f"{{{node.least},{'' if node.most is None else node.most}}}"
        return inner + suffix

    def _class(self, chars: Chars) -> str:
        if chars in self.classes:
            return self.classes[chars]
        options = list(_class_options(chars))
        if len(options) == 1:
            return options[0]
        self.classes[chars] = name = f"c-{len(self.classes)}"
        self.rules[name] = " | ".join(options)
        return name


def _class_options(chars: Chars) -> Iterator[str]:
    """The JSON-string forms of the characters in `chars`: the plain ones as one class, then
    the escapes of the others."""
    if chars.negated:
        yield "[^" + _class_ranges([*chars.ranges, *_NOT_PLAIN]) + "]"
    elif plain := _without(chars.ranges, _NOT_PLAIN):
        yield "[" + _class_ranges(plain) + "]"
    for codepoint in sorted(_SHORT_ESCAPES):
        if codepoint in chars:
            yield _gbnf_literal(_SHORT_ESCAPES[codepoint])
    for high in (0, 1):  # \u0000-\u001f, but for the short ones: by their last hex digit
        lows = [c & 0xF for c in range(high * 16, high * 16 + 16) if c in chars and c not in _SHORT_ESCAPES]
        if lows:
            yield _gbnf_literal(f"\\u00{high}") + " [" + "".join(f"{low:x}" for low in lows) + "]"


def _class_ranges(ranges: list[tuple[int, int]]) -> str:
    def one(codepoint: int) -> str:
        return _gbnf_char(chr(codepoint), _IN_CLASS)

    return "".join(one(low) if low == high else f"{one(low)}-{one(high)}" for low, high in ranges)


def _without(
    ranges: tuple[tuple[int, int], ...], holes: tuple[tuple[int, int], ...]
) -> list[tuple[int, int]]:
    kept = list(ranges)
    for hole_low, hole_high in holes:
        split: list[tuple[int, int]] = []
        for low, high in kept:
            if high < hole_low or low > hole_high:
                split.append((low, high))
                continue
            if low < hole_low:
                split.append((low, hole_low - 1))
            if high > hole_high:
                split.append((hole_high + 1, high))
        kept = split
    return kept


def rule_name(name: str) -> str:
    """A Lark name as a GBNF rule name (letters, digits and '-'), apart from Tether's own."""
    return "g-" + name.replace("_", "-")  # Lark's names have no '-': no two become one


def call_grammar(model_name: str, input_format: InputFormat, arguments_key: str = "arguments") -> str:
    """GBNF of one call to the custom tool `model_name`, written as the model writes every call
    (`{"name": …, "arguments": {"input": …}}`, the arguments under `arguments_key`), its input
    following `input_format`'s grammar."""
    if input_format.type != "grammar" or input_format.definition is None:
        raise Unsupported("the tool's format is free text")
    gbnf = _Gbnf()
    if input_format.syntax == "regex":
        body = gbnf.write(parse_regex(input_format.definition))
    elif input_format.syntax == "lark":
        for name, node in parse_lark(input_format.definition).items():
            gbnf.rules[rule_name(name)] = gbnf.write(node)
        body = rule_name("start")
    else:
        raise Unsupported(f"the grammar syntax {input_format.syntax!r}")
    key = json.dumps(arguments_key)
    head = '{"name": ' + json.dumps(model_name, ensure_ascii=False) + f", {key}: " + '{"input": "'
    root = f"root ::= {_gbnf_literal(head)} {body} {_gbnf_literal(chr(34) + '}}')}"
    return "\n".join([root, *(f"{name} ::= {rule}" for name, rule in gbnf.rules.items())]) + "\n"
