"""The calls a model writes in a free answer (`tool_choice: "auto"`), found as it writes them.

Every prompt format so far teaches Hermes' call format (`chatml.TOOL_CALL_OPEN`): a JSON object
`{"name": ..., "arguments": {...}}` between `<tool_call>` and `</tool_call>`, and a model may
write several, with or without text around them. `CallScanner` turns the answer's text, piece by
piece as it is decoded, into model events: text goes out as it comes, except what may be the
start of a tag; a call opens once its name is whole, and its arguments stream as they come, less
what may be the end of the object and the closing tag.
"""

from __future__ import annotations

import json
import re

from tether.backends.base import TextDelta, ToolCallDelta, ToolCallStarted

OPEN = "<tool_call>"
CLOSE = "</tool_call>"
# A call's head, up to where its arguments begin (once they have: their first character is in).
_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*(?=\S)', re.DOTALL)
# The end of a call: its object's last brace, the closing tag, and the space between them.
_TAIL = re.compile(r"\}\s*" + re.escape(CLOSE))
HEAD_CHARS = 256  # a head longer than this without a name is no call (names are short)

Event = TextDelta | ToolCallStarted | ToolCallDelta


def partial_suffix(text: str, tag: str) -> int:
    """The length of the longest end of `text` that begins `tag`."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-length:]):
            return length
    return 0


def _tail_start(held: str) -> int:
    """Where the end of the call may begin in `held` (its length when it cannot have begun): at
    its last brace, when only space and the start of the closing tag follow that brace."""
    brace = held.rfind("}")
    if brace >= 0 and CLOSE.startswith(held[brace + 1 :].lstrip()):
        return brace
    return len(held)


class CallScanner:
    def __init__(self) -> None:
        self._held = ""  # what was read and not yet said
        self._in_call = False  # inside <tool_call>...</tool_call>
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
        if self._named:
            return [ToolCallDelta(held)] if held else []
        return [TextDelta(self._space + OPEN + held)]

    def _text_step(self, events: list[Event]) -> bool:
        start = self._held.find(OPEN)
        if start < 0:
            # Held back: what may begin a tag, and the space before it (space right before a
            # call belongs to no message).
            said = self._held[: len(self._held) - partial_suffix(self._held, OPEN)].rstrip()
            if said:
                events.append(TextDelta(said))
            self._held = self._held[len(said) :]
            return False
        before = self._held[:start]
        said = before.rstrip()
        if said:
            events.append(TextDelta(said))
        self._space = before[len(said) :]
        self._held = self._held[start + len(OPEN) :]
        self._in_call, self._named = True, False
        return True

    def _call_step(self, events: list[Event]) -> bool:
        if not self._named:
            head = _HEAD.match(self._held)
            if head is None:
                opened = self._held.lstrip()
                if (opened and opened[0] != "{") or len(self._held) > HEAD_CHARS:  # it was text
                    events.append(TextDelta(self._space + OPEN + self._held))
                    self._held, self._in_call = "", False
                    return True
                return False
            events.append(ToolCallStarted(json.loads(head[1])))
            self._held = self._held[head.end() :]
            self._named = True
            self.calls += 1
        tail = _TAIL.search(self._held)
        if tail is not None:
            if tail.start():
                events.append(ToolCallDelta(self._held[: tail.start()]))
            self._held = self._held[tail.end() :].lstrip()
            self._in_call = False
            return True
        cut = _tail_start(self._held)
        if cut:
            events.append(ToolCallDelta(self._held[:cut]))
            self._held = self._held[cut:]
        return False
