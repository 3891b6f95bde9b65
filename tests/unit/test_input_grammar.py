"""A custom tool's Lark or regex grammar as GBNF over the JSON string of a call's input, checked
by llama.cpp's own grammar matcher: what the grammar says is exactly what may be written."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.grammar_check import GrammarCheck
from tether.backends.local.input_grammar import Unsupported, call_grammar
from tether.backends.local.model_file import locate
from tether.protocol.tools import InputFormat

# Codex's editing tool, as it declares it (its `apply_patch` freeform tool).
APPLY_PATCH = r"""
start: begin_patch hunk+ end_patch
begin_patch: "*** Begin Patch" LF
end_patch: "*** End Patch" LF?

hunk: add_hunk | delete_hunk | update_hunk
add_hunk: "*** Add File: " filename LF add_line+
delete_hunk: "*** Delete File: " filename LF
update_hunk: "*** Update File: " filename LF change_move? change?

filename: /(.+)/
add_line: "+" /(.*)/ LF -> line

change_move: "*** Move to: " filename LF
change: (change_context | change_line)+ eof_line?
change_context: ("@@" | "@@ " /(.+)/) LF
change_line: ("+" | "-" | " ") /(.*)/ LF
eof_line: "*** End of File" LF

%import common.LF
"""
PATCH = (
    "*** Begin Patch\n*** Update File: src/a.py\n@@ def f():\n"
    '-    return 1\n+    return "2"  # \\ \t\n*** End Patch\n'
)
REGEXES = [
    r"^\d{4}-\d{2}-\d{2}$",
    r"[A-Z][a-z]+(, [A-Z][a-z]+)*",
    r'(?P<key>\w+)="[^"\n]*"',
    r"(yes|no|maybe)\.?",
    r"[^\]\-^a-c]{2,5}",
    r"(?:\s\S)+",
    r"[\\\t\x00-\x1f]{1,3}",
]


@pytest.fixture(scope="module")
def check() -> Iterator[GrammarCheck]:
    checker = GrammarCheck(locate(None).path)
    yield checker
    checker.close()


def call(name: str, text: str) -> str:
    """A call as the model writes it (`chatml.tool_call_text`)."""
    return json.dumps({"name": name, "arguments": {"input": text}}, ensure_ascii=False)


def regex(pattern: str) -> str:
    return call_grammar("t", InputFormat("grammar", "regex", pattern))


def lark(source: str) -> str:
    return call_grammar("t", InputFormat("grammar", "lark", source))


def writable(text: str) -> bool:
    """Text the tokenizer can spell: no lone surrogates, no unassigned code points (llama.cpp
    tokenizes U+40000 as three unrelated tokens)."""
    return all(unicodedata.category(char) not in ("Cs", "Cn") for char in text)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_what_a_regex_matches_is_what_may_be_written(check: GrammarCheck, data: st.DataObject) -> None:
    pattern = data.draw(st.sampled_from(REGEXES))
    gbnf = regex(pattern)
    # `\d \w \s` are their ASCII forms, as the package says.
    matching = data.draw(st.from_regex(re.compile(pattern, re.ASCII), fullmatch=True).filter(writable))
    assert check.accepts(gbnf, call("t", matching)), (pattern, matching)
    other = data.draw(st.text(max_size=8).filter(writable))
    assert check.accepts(gbnf, call("t", other)) == bool(re.fullmatch(pattern, other, re.ASCII)), (
        pattern,
        other,
    )


def test_codex_s_patch_grammar_takes_a_patch_and_nothing_else(check: GrammarCheck) -> None:
    gbnf = lark(APPLY_PATCH)
    assert check.accepts(gbnf, call("t", PATCH))
    assert check.accepts(gbnf, call("t", "*** Begin Patch\n*** Delete File: old.txt\n*** End Patch"))
    assert not check.accepts(gbnf, call("t", PATCH.replace("*** End Patch", "*** Done")))
    assert not check.accepts(gbnf, call("t", PATCH.replace("@@ def f():\n", "@@ def f():\nno prefix\n")))
    assert not check.accepts(gbnf, call("other", PATCH))  # the name is the tool's
    assert not check.accepts(gbnf, call("t", PATCH) + " ")  # the call ends with the JSON


def test_lark_s_own_forms(check: GrammarCheck) -> None:
    source = """
    start: greeting ("," _WS? NAME)~1..2 [END] | "nothing"
    greeting: "hi"
        | "hello"  // a comment
    NAME.2: ("a".."z")+
    END: "!"
    _WS: WS_INLINE
    %import common (WS_INLINE)
    """
    gbnf = lark(source)
    for text in ("hi,bob", "hello, ann,  cy!", "nothing"):
        assert check.accepts(gbnf, call("t", text)), text
    for text in ("hi", "hi,bob,ann,cy", "hello,Bob", "hi, bob!!"):
        assert not check.accepts(gbnf, call("t", text)), text


@pytest.mark.parametrize(
    ("syntax", "definition", "named"),
    [
        ("regex", r"(?=a)a", "lookahead '(?='"),
        ("regex", r"(?<!a)b", "lookbehind '(?<!'"),
        ("regex", r"(a)\1", "the escape '\\1'"),
        ("regex", r"\bword", "the escape '\\b'"),
        ("regex", r"(?i)a", "inline flags '(?i)'"),
        ("lark", 'start: "a"\n%ignore " "', "the directive %ignore"),
        ("lark", 'start: "a"i', "case-insensitive strings"),
        ("lark", "start: thing", "'thing' is used but never defined"),
        ("lark", 'begin: "a"', "no rule 'start'"),
        ("lark", "start: X\n%import common.NOT_THERE -> X", "the common terminal NOT_THERE"),
    ],
)
def test_what_is_outside_the_subset_is_named(syntax: str, definition: str, named: str) -> None:
    with pytest.raises(Unsupported, match=re.escape(named)):
        call_grammar("t", InputFormat("grammar", syntax, definition))
