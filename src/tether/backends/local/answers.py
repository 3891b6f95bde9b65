"""A free answer's text, piece by piece as it is decoded, as model events.

An answer may start with the model's thinking between `<think>` and `</think>` (Qwen 3, the
DeepSeek R1 distillations; a template may open the turn with `<think>` itself): that goes out as
reasoning, never as text. The rest is text, and, when the model may call tools, the calls it
writes in it (`tool_calls.CallScanner`).
"""

from __future__ import annotations

from tether.backends.base import ReasoningDelta, TextDelta
from tether.backends.local.tool_calls import CallScanner, Event, partial_suffix
from tether.backends.local.tool_formats import ToolFormat

THINK = "<think>"
END_THINK = "</think>"


class AnswerScanner:
    def __init__(self, thinking: bool, calls: ToolFormat | None, one_call: bool = False) -> None:
        """`thinking`: the prompt opened the model's turn in its thinking; `calls`: the format
        of the calls the model may write (None: it may write none); `one_call`: it may write
        one at most."""
        self._state = "thinking" if thinking else "start"
        self._held = ""
        self._calls = None if calls is None else CallScanner(calls, one_call=one_call)

    @property
    def calls(self) -> int:
        """Calls opened so far."""
        return 0 if self._calls is None else self._calls.calls

    @property
    def closed(self) -> int:
        """Calls whose object is whole."""
        return 0 if self._calls is None else self._calls.closed

    @property
    def in_call(self) -> bool:
        return self._calls is not None and self._calls.in_call

    def feed(self, text: str) -> list[Event | ReasoningDelta]:
        if self._state == "thought":  # the space after the thinking is no text
            text = text.lstrip()
            self._state = "answer" if text else "thought"
        if self._state == "answer":
            return self._answer(text)
        self._held += text
        if self._state == "start":
            opened = self._held.lstrip()
            if THINK.startswith(opened):  # (so far) the answer may still open its thinking
                return []
            if not opened.startswith(THINK):
                held, self._held, self._state = self._held, "", "answer"
                return self._answer(held)
            self._held, self._state = opened[len(THINK) :], "thinking"
        end = self._held.find(END_THINK)
        if end < 0:
            cut = len(self._held) - partial_suffix(self._held, END_THINK)
            thought, self._held = self._held[:cut], self._held[cut:]
            return [ReasoningDelta(thought)] if thought else []
        thought, rest = self._held[:end], self._held[end + len(END_THINK) :]
        self._held, self._state = "", "thought"
        return ([ReasoningDelta(thought)] if thought else []) + self.feed(rest)

    def finish(self) -> list[Event | ReasoningDelta]:
        held, self._held = self._held, ""
        if self._state == "thinking":  # cut short while thinking
            return [ReasoningDelta(held)] if held else []
        events = self._answer(held) if held else []
        return events + (self._calls.finish() if self._calls is not None else [])

    def _answer(self, text: str) -> list[Event | ReasoningDelta]:
        if self._calls is not None:
            return list(self._calls.feed(text))
        return [TextDelta(text)] if text else []
