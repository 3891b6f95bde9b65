"""The calls a model writes in its answer, found as it writes them.

A call is written in the format the prompt teaches (`tool_formats.py`): after the format's
opening markup (in Llama 3's, which has none, at the answer's start) come one or more calls,
each with markup of its own in Hermes' format, separated by `;` in Llama 3's, as one JSON list
in Mistral's and Phi-4-mini's. Text may come before and after them.

`CallScanner` turns the answer's text, piece by piece as it is decoded, into model events. Text
goes out as it comes, except what may be the start of the markup. A call opens once its name is
whole; its arguments stream as they come, and a small JSON reader (`_Value`) tells where they
end, so nothing of them is held back and no brace inside them is mistaken for their end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Literal

from tether.backends.base import TextDelta, ToolCallDelta, ToolCallStarted
from tether.backends.local.escaped import EscapedReader
from tether.backends.local.tool_formats import ToolFormat

HEAD_CHARS = 256  # a head longer than this without a name is no call (names are short)

Event = TextDelta | ToolCallStarted | ToolCallDelta
_ESCAPED_HEAD = re.compile(r"\s*call:([^{\s]+)(?=\{)")  # FunctionGemma's (`escaped.py`)
# text: outside calls; head: in a group of calls, before a call's name (or a list's "[");
# arguments: in a call's arguments; rest: in its object after them; between: after its object;
# done: after the one call it was to read.
State = Literal["text", "head", "arguments", "rest", "between", "done"]


def partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag`."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0


def _markup_end(text: str, markup: str) -> int | None:
    """Where `markup` ends in `text` when `text` starts with it, space before any of its
    characters allowed (models vary it); None when it does not (yet) start with it."""
    at = 0
    for char in markup:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text) or text[at] != char:
            return None
        at += 1
    return at


class _Value:
    """Where a JSON value, read piece by piece, ends: the brackets open and whether a string is."""

    def __init__(self, depth: int = 0) -> None:
        self._depth = depth  # 1: inside an object whose `{` was read already
        self._in_string = False
        self._escaped = False

    def read(self, text: str) -> tuple[int, str, bool]:
        """How much of `text` belongs to the value, that part, and whether the value ended."""
        end = self._end(text)
        return (len(text), text, False) if end is None else (end, text[:end], True)

    def _end(self, text: str) -> int | None:
        for at, char in enumerate(text):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
                    if not self._depth:
                        return at + 1
            elif not self._depth and (char in ",}]" or char.isspace()):
                return at  # the end of a number, `true`, `false` or `null`
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if not self._depth:
                    return at + 1
        return None


class CallScanner:
    def __init__(self, format: ToolFormat, forced: bool = False, one_call: bool = False) -> None:
        """`forced`: the prompt opened the calls and a grammar writes them: the answer starts
        inside them, and nothing of it is text. `one_call`: whatever follows the first call is
        dropped (`parallel_tool_calls: false`; the engine stops the answer there)."""
        self._format = format
        # Markup less the space around it (models vary it): "" where there is none.
        self._open, self._separator = format.open.strip(), format.separator.strip()
        self._end = ("]" if format.listed else "") + format.close.strip()  # what ends a group
        # A call's head, up to where its arguments begin (once they have: their first character
        # is in). Llama 3 models may put `"type": "function"` before the name.
        self._head = _ESCAPED_HEAD if format.escaped else re.compile(
            r'\s*\{\s*(?:"type"\s*:\s*"function"\s*,\s*)?"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"'
            + re.escape(format.arguments_key) + r'"\s*:\s*(?=\S)', re.DOTALL)  # fmt: skip
        self._forced, self._one_call = forced, one_call
        self._state: State = "head" if forced else "text"
        self._held = ""  # what was read and not yet said
        self._unsaid = ""  # what opened the current group, said as text if no call follows it
        self._bracketed = not format.listed  # a listed group's "[" is read
        self._value: _Value | EscapedReader = _Value()  # reads the arguments, then the rest
        self._after_calls = False  # calls ended and no text came since
        self._said = False  # text went out (calls without markup must be the whole answer)
        self._group_calls = 0  # calls opened in the current group
        self.made: list[tuple[str, str]] = []  # each call opened: its name and arguments so far
        self.closed = 0  # calls whose object is whole
        self._steps: dict[State, Callable[[list[Event]], bool]] = {
            "text": self._text, "head": self._head_step, "arguments": self._arguments,
            "rest": self._rest, "between": self._between, "done": self._done,
        }  # fmt: skip

    @property
    def calls(self) -> int:
        """Calls opened so far."""
        return len(self.made)

    @property
    def in_call(self) -> bool:
        """Calls are being written (a steer lets them finish)."""
        return self._state not in ("text", "done")

    def feed(self, text: str) -> list[Event]:
        self._held += text
        events: list[Event] = []
        while self._steps[self._state](events):
            pass
        return events

    def finish(self) -> list[Event]:
        """What is left once the answer ended: held text is text; calls cut short end with what
        they hold (their response ends incomplete), and markup without a call was text."""
        held, self._held = self._held, ""
        if self._state == "text":
            # Space after the last call belongs to no message.
            return [TextDelta(held)] if held and not (self.calls and held.isspace()) else []
        if self._state == "head" and not self._forced:
            unsaid = self._unsaid + held if not self._group_calls else held.strip()
            return [TextDelta(unsaid)] if unsaid else []
        return []

    def _text(self, events: list[Event]) -> bool:
        if self._after_calls:  # the space between calls and text belongs to no message
            self._held = self._held.lstrip()
            if not self._held:
                return False
            self._after_calls = False
        if not self._open:
            return self._answer_start(events)
        start = self._held.find(self._open)
        if start < 0:
            # Held back: what may begin the markup, and the space before it (space right
            # before calls belongs to no message).
            said = self._held[: len(self._held) - partial_suffix(self._held, self._open)].rstrip()
            self._say(said, events)
            self._held = self._held[len(said) :]
            return False
        before = self._held[:start]
        said = before.rstrip()
        self._say(said, events)
        self._open_group(before[len(said) :] + self._open, self._held[start + len(self._open) :])
        return True

    def _answer_start(self, events: list[Event]) -> bool:
        """Without opening markup, calls are the whole answer: one that opens with an object."""
        opened = self._held.lstrip()
        if not self._said and not self.calls and opened.startswith("{"):
            self._open_group(self._held[: len(self._held) - len(opened)], opened)
            return True
        if self._said or self.calls or opened:
            self._say(self._held, events)
            self._held = ""
        return False

    def _open_group(self, markup: str, rest: str) -> None:
        self._state, self._unsaid, self._held = "head", markup, rest
        self._bracketed, self._group_calls = not self._format.listed, 0

    def _head_step(self, events: list[Event]) -> bool:
        opened = self._held.lstrip()
        if not self._bracketed:
            if not opened:
                return False
            if opened[0] != "[":
                return self._no_call(events)
            self._unsaid += self._held[: len(self._held) - len(opened) + 1]
            self._held, self._bracketed = opened[1:], True
            return True
        head = self._head.match(self._held)
        if head is None:
            start = "call:" if self._format.escaped else "{"  # what every head starts with
            if not start.startswith(opened[: len(start)]) or len(self._held) > HEAD_CHARS:
                return self._no_call(events)
            return False
        name = head[1] if self._format.escaped else json.loads(head[1])
        events.append(ToolCallStarted(name))
        self.made.append((name, ""))
        self._held, self._unsaid = self._held[head.end() :], ""
        self._state, self._value = "arguments", EscapedReader() if self._format.escaped else _Value()
        self._group_calls += 1
        return True

    def _no_call(self, events: list[Event]) -> bool:
        """What followed the markup is no call: it was text, the markup too if no call came."""
        self._say((self._unsaid if not self._group_calls else "") + self._held, events)
        self._state, self._held, self._unsaid = "text", "", ""
        return False

    def _arguments(self, events: list[Event]) -> bool:
        read, arguments, ended = self._value.read(self._held)
        if arguments:
            events.append(ToolCallDelta(arguments))
            name, so_far = self.made[-1]
            self.made[-1] = (name, so_far + arguments)
        self._held = self._held[read:]
        if not ended:
            return False
        if self._format.escaped:  # the arguments are all there is to the call
            self._call_ended()
        else:
            self._state, self._value = "rest", _Value(depth=1)
        return True

    def _rest(self, events: list[Event]) -> bool:
        """The rest of the call's object (keys after the arguments, such as Mistral's `id`)."""
        read, _, ended = self._value.read(self._held)
        self._held = self._held[read:]
        if ended:
            self._call_ended()
        return ended

    def _call_ended(self) -> None:
        self._state = "done" if self._one_call else "between"
        self.closed += 1

    def _done(self, events: list[Event]) -> bool:
        self._held = ""
        return False

    def _between(self, events: list[Event]) -> bool:
        opened = self._held.lstrip()
        if not opened:
            return False
        if self._separator and opened.startswith(self._separator):
            self._held, self._state = opened[len(self._separator) :], "head"
            return True
        end = _markup_end(self._held, self._end)
        if end is None and self._end.startswith("".join(self._held.split())):
            return False  # (so far) the start of the group's end
        # After the group's end, or without it, the rest is text.
        self._held, self._state, self._after_calls = self._held[end or 0 :], "text", True
        return True

    def _say(self, text: str, events: list[Event]) -> None:
        if text:
            events.append(TextDelta(text))
            self._said = True
