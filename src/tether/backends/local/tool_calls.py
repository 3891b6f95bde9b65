"""The calls a model writes in a free answer (`tool_choice: "auto"`), found as it writes them.

A call is written in the format the prompt teaches (`tool_formats.py`). In Hermes' format a
model may write several, between `<tool_call>` and `</tool_call>`, with or without text around
them; in Llama 3's, a call is the whole answer. `CallScanner` turns the answer's text, piece by
piece as it is decoded, into model events: text goes out as it comes, except what may be the
start of a tag; a call opens once its name is whole, and its arguments stream as they come, less
what may be the end of the object and the closing markup.
"""

from __future__ import annotations

import json
import re

from tether.backends.base import TextDelta, ToolCallDelta, ToolCallStarted
from tether.backends.local.tool_formats import ToolFormat

HEAD_CHARS = 256  # a head longer than this without a name is no call (names are short)

Event = TextDelta | ToolCallStarted | ToolCallDelta


def partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag`."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0


def _tail_start(held: str, close: str) -> int:
    """Where the end of the call may begin in `held` (its length when it cannot have begun): at
    its last brace, when only space and the start of the closing markup follow that brace."""
    brace = held.rfind("}")
    if brace >= 0 and close.startswith(held[brace + 1 :].lstrip()):
        return brace
    return len(held)


class CallScanner:
    def __init__(self, format: ToolFormat) -> None:
        # Its markup, less the space around it (models vary it): "" where there is none.
        self._open, self._close = format.open.strip(), format.close.strip()
        # A call's head, up to where its arguments begin (once they have: their first character
        # is in), and its end: the object's last brace, the closing markup, the space between.
        self._head = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"'
                                + re.escape(format.arguments_key) + r'"\s*:\s*(?=\S)', re.DOTALL)  # fmt: skip
        self._tail = re.compile(r"\}\s*" + re.escape(self._close))
        self._said = False  # text went out (a call without markup must be the whole answer)
        self._held = ""  # what was read and not yet said
        self._in_call = False  # inside a call, from its opening markup (or first brace) on
        self._named = False  # the current call's name is out
        self._space = ""  # the space before a tag not yet known to open a call
        self.calls = 0  # calls opened so far

    @property
    def in_call(self) -> bool:
        """A call is being written (a steer lets it finish)."""
        return self._in_call

    def feed(self, text: str) -> list[Event]:
        self._held += text
        events: list[Event] = []
        while True:
            progressed = self._call_step(events) if self._in_call else self._text_step(events)
            if not progressed:
                return events

    def finish(self) -> list[Event]:
        """What is left once the answer ended: held text is text; a call cut short streams what
        it holds (its response ends incomplete), and a head cut before its name was no call."""
        held, self._held = self._held, ""
        if not self._in_call:
            # Space after the last call belongs to no message.
            return [TextDelta(held)] if held and not (self.calls and held.isspace()) else []
        if not self._named:
            return [TextDelta(self._space + self._open + held)]
        if not self._close:  # the answer's end ends the call: its object's brace is no argument
            held = re.sub(r"\}\s*$", "", held)
        return [ToolCallDelta(held)] if held else []

    def _text_step(self, events: list[Event]) -> bool:
        if not self._open:
            return self._answer_step(events)
        start = self._held.find(self._open)
        if start < 0:
            # Held back: what may begin a tag, and the space before it (space right before a
            # call belongs to no message).
            said = self._held[: len(self._held) - partial_suffix(self._held, self._open)].rstrip()
            if said:
                events.append(TextDelta(said))
            self._held = self._held[len(said) :]
            return False
        before = self._held[:start]
        said = before.rstrip()
        if said:
            events.append(TextDelta(said))
        self._space = before[len(said) :]
        self._held = self._held[start + len(self._open) :]
        self._in_call, self._named = True, False
        return True

    def _answer_step(self, events: list[Event]) -> bool:
        """Without markup, a call is the whole answer: one that opens with an object."""
        opened = self._held.lstrip()
        if not self._said and not self.calls and opened.startswith("{"):
            self._space, self._held = self._held[: len(self._held) - len(opened)], opened
            self._in_call, self._named = True, False
            return True
        if self._said or self.calls or opened:
            if self._held:
                events.append(TextDelta(self._held))
            self._held, self._said = "", True
        return False

    def _call_step(self, events: list[Event]) -> bool:
        if not self._named:
            head = self._head.match(self._held)
            if head is None:
                opened = self._held.lstrip()
                if (opened and opened[0] != "{") or len(self._held) > HEAD_CHARS:  # it was text
                    events.append(TextDelta(self._space + self._open + self._held))
                    self._held, self._in_call, self._said = "", False, True
                    return True
                return False
            events.append(ToolCallStarted(json.loads(head[1])))
            self._held = self._held[head.end() :]
            self._named = True
            self.calls += 1
        # Without closing markup the call ends with the answer (`finish`), whatever braces come.
        tail = self._tail.search(self._held) if self._close else None
        if tail is not None:
            if tail.start():
                events.append(ToolCallDelta(self._held[: tail.start()]))
            self._held = self._held[tail.end() :].lstrip()
            self._in_call = False
            return True
        cut = _tail_start(self._held, self._close)
        if cut:
            events.append(ToolCallDelta(self._held[:cut]))
            self._held = self._held[cut:]
        return False
