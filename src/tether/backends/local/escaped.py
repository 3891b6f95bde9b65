"""FunctionGemma's way of writing a call's arguments, read as JSON while it streams.

FunctionGemma writes `call:NAME{key:<escape>text<escape>,count:3,tags:[<escape>a<escape>]}`:
JSON's structure with bare keys, and every string between two `<escape>` tokens instead of
quotes, unescaped (the tokens are what keeps a brace or a comma inside a string from counting).
`EscapedReader` turns that into the JSON object the call's arguments are, piece by piece.
`escaped_grammar` rewrites the JSON grammar of a forced call into this syntax.
"""

from __future__ import annotations

import json
import re

ESCAPE = "<escape>"


class EscapedReader:
    """One arguments object, from its `{` on."""

    def __init__(self) -> None:
        self._open: list[str] = []  # the brackets open, innermost last
        self._in_string = False
        self._key: str | None = None  # a bare key being read (None: not at a key)

    def read(self, text: str) -> tuple[int, str, bool]:
        """How much of `text` was read (the rest may be the start of `<escape>`: it is to be
        read again with what follows), what it is in JSON, and whether the object ended."""
        out: list[str] = []
        at = 0
        while at < len(text):
            if text.startswith(ESCAPE, at):
                out.append('"')
                self._in_string = not self._in_string
                at += len(ESCAPE)
                continue
            if ESCAPE.startswith(text[at:]):
                break  # may be the start of `<escape>`
            char = text[at]
            at += 1
            if self._in_string:
                out.append(json.dumps(char, ensure_ascii=False)[1:-1])
            elif self._key is not None:
                if char == ":":
                    out.append(json.dumps(self._key.strip(), ensure_ascii=False) + ":")
                    self._key = None
                elif char == "}":  # an empty object
                    self._key = None
                    if self._close(char, out):
                        return at, "".join(out), True
                else:
                    self._key += char
            elif char in "{[":
                self._open.append(char)
                out.append(char)
                self._key = "" if char == "{" else None
            elif char in "}]":
                if self._close(char, out):
                    return at, "".join(out), True
            elif char == ",":
                out.append(char)
                self._key = "" if self._open and self._open[-1] == "{" else None
            elif not char.isspace():
                out.append(char)  # numbers, true, false, null
        return at, "".join(out), False

    def _close(self, char: str, out: list[str]) -> bool:
        """Close the innermost bracket; whether that ended the object."""
        if self._open:
            self._open.pop()
        out.append(char)
        return not self._open


def escaped_grammar(json_grammar: str, names: list[str]) -> str:
    """The GBNF of `call:NAME{...}` for the tools `names`, from the GBNF of their JSON calls
    (`grammar.tool_call_schema`, each tool's arguments the rule `args-I`): keys bare, strings
    between `<escape>` tokens. Strings may not contain `<` here: GBNF cannot say "anything but
    `<escape>`", and a tool's arguments rarely need one."""
    grammar = re.sub(r'"\\"((?:[^"\\]|\\.)*)\\"" space ":" space', r'"\1:"', json_grammar)  # keys
    grammar = re.sub(r'"\\"((?:[^"\\]|\\.)*)\\""', rf'"{ESCAPE}\1{ESCAPE}"', grammar)  # constants
    grammar = re.sub(r"^string ::= .*$", f'string ::= "{ESCAPE}" [^<]* "{ESCAPE}"', grammar, flags=re.M)
    # A free object's keys are strings in JSON, bare here.
    grammar = re.sub(r'string ":" space', 'key ":"', grammar)
    grammar = re.sub(r"^space ::= .*$", 'space ::= ""', grammar, flags=re.M)
    calls = " | ".join(f'"call:{name}" args-{i}' for i, name in enumerate(names))
    grammar = re.sub(r"^root ::= .*$", f"root ::= {calls}", grammar, flags=re.M)
    return grammar.rstrip() + "\nkey ::= [A-Za-z_] [A-Za-z0-9_]*\n"
