"""A custom tool's grammar (`lark` or `regex`) as llama.cpp's GBNF, for a forced call:
`tree.py` is what a grammar says, `regex.py` and `lark.py` read the two syntaxes into it, and
`gbnf.py` writes it for llama.cpp.

The model writes a custom tool's input as the string `input` of a function call's JSON
arguments (`tools.CUSTOM_INPUT`), so the grammar here runs over that JSON string's characters:
a newline the tool's grammar asks for is written `\\n`, a quote `\\"`. The call reads exactly as
every other call the model sees in its prompt, and its KV cache serves the next turn.

The subset, and what is refused (`Unsupported`, naming it; the call is then constrained to any
string, as a call without a grammar is):

- regex: literals and escapes, classes (`[a-z]`, `[^"]`, `\\d \\w \\s` and their negations,
  in their ASCII meaning), `.`, groups (plain, `(?:…)`, named), `|`, the quantifiers
  `* + ? {m} {m,} {m,n}` (lazy ones match as greedy ones do); anchors (`^ $ \\A \\Z \\z`)
  match nothing, as the whole input is matched anyway; the flag `s`. Not: lookaround,
  backreferences, `\\b`, inline flags, case insensitivity.
- lark: rules and terminals (`name: …`, `NAME: …`, alternatives on further lines starting with
  `|`), strings, `/regex/`, `"a".."z"`, groups, `[optional]`, `? * +`, `~ n` and `~ n..m`,
  aliases (`-> name`), priorities, and `%import common.NAME` (or `common (A, B)`) of the common
  terminals `lark._COMMON` lists; the rule `start` is the input. Not: `%ignore` (it allows its
  terminal anywhere), `%declare`, templates, case-insensitive strings.
"""

from tether.backends.local.input_grammar.gbnf import call_grammar
from tether.backends.local.input_grammar.tree import Unsupported

__all__ = ["Unsupported", "call_grammar"]
