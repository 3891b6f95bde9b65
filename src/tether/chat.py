"""`tether chat`: a terminal client that keeps one WebSocket and continues each turn.

Every turn sends only the new user message with `previous_response_id`, the way agents use
WebSocket mode, and prints what that costs: time to first token, total time, and how many of
the input tokens the server already had cached; a turn that missed the cache of the one before
says why (`prompt_cache_diagnostics`).

In a terminal, a line typed while the answer streams steers it (`response.steer`): the answer
stops where it is and its successor answers with the new line in mind; its time to first token
is counted from the steer. Piped input is always a next turn, never a steer.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from websockets.sync.client import ClientConnection, connect

TERMINAL = {"response.completed", "response.failed", "response.incomplete"}
COMMANDS = "/new starts a new conversation, /quit (or end of input) leaves"
STEERING = "type while an answer streams to steer it"
POLL_S = 0.05  # how often a streaming turn looks for a line typed meanwhile


@dataclass(frozen=True)
class TurnStats:
    seconds: float
    first_token_s: float | None
    input_tokens: int
    cached_tokens: int
    output_tokens: int

    def line(self, number: int) -> str:
        first = f"first token {self.first_token_s:.2f} s · " if self.first_token_s is not None else ""
        return (
            f"turn {number} · {first}{self.seconds:.2f} s · {self.input_tokens} in "
            f"({self.cached_tokens} cached) · {self.output_tokens} out"
        )


class Keyboard:
    """The lines typed, read by a thread of their own, so that a streaming turn can take one."""

    def __init__(self, lines: TextIO) -> None:
        self.lines = lines
        self.typed: queue.Queue[str | None] = queue.Queue()  # None: the input has ended
        threading.Thread(target=self._read, name="chat-keyboard", daemon=True).start()

    def next(self) -> str | None:
        """The next line, waiting for it; None once the input has ended."""
        return self.typed.get()

    def meanwhile(self) -> str | None:
        """A line typed since, if any (an ended input stays ended for `next`)."""
        try:
            line = self.typed.get_nowait()
        except queue.Empty:
            return None
        if line is None:
            self.typed.put(None)
        return line

    def _read(self) -> None:
        for line in self.lines:
            self.typed.put(line)
        self.typed.put(None)


@dataclass
class _Streaming:
    """What one turn is waiting for: a `response.created` still to come (the create's, then an
    accepted steer's successor), the response streaming now, the steers not yet answered."""

    started: float  # when what the streaming response answers was sent: the create, or a steer
    steered: float | None = None  # when the last steer was sent: its successor's start
    expecting: bool = True
    response: str | None = None
    first_token: float | None = None
    unanswered: int = 0

    @property
    def over(self) -> bool:
        return not self.expecting and self.response is None and not self.unanswered


class ChatSession:
    def __init__(self, url: str, model: str, api_key: str | None, store: bool, console: Console):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.socket: ClientConnection = connect(url, additional_headers=headers, max_size=None)
        self.model = model
        self.store = store
        self.console = console
        self.previous: str | None = None
        self.turns = 0

    def close(self) -> None:
        self.socket.close()

    def ask(self, text: str, instructions: str | None, keyboard: Keyboard | None = None) -> None:
        """One turn, until its answer (and the successors of its steers) has ended; a line typed
        on `keyboard` meanwhile steers the answer streaming then."""
        create: dict[str, Any] = {"type": "response.create", "model": self.model, "store": self.store,
                                  "input": [{"role": "user", "content": text}]}  # fmt: skip
        if instructions:
            create["instructions"] = instructions
        if self.previous:
            create["previous_response_id"] = self.previous
            create["prompt_cache_options"] = {"comparison_response_id": self.previous}
        turn = _Streaming(started=time.monotonic())
        self.socket.send(json.dumps(create))
        while not turn.over:
            typed = keyboard.meanwhile() if keyboard is not None else None
            if typed and typed.strip() and turn.response is not None:
                self._steer(turn, typed.strip())
            try:
                event: dict[str, Any] = json.loads(self.socket.recv(timeout=POLL_S))
            except TimeoutError:
                continue
            if not self._show(turn, event):
                return

    def _steer(self, turn: _Streaming, text: str) -> None:
        steer = {"type": "response.steer", "previous_response_id": turn.response, "input": text}
        self.socket.send(json.dumps(steer))
        turn.unanswered += 1
        turn.steered = time.monotonic()
        self.console.print(f"\n[magenta]↪ steering: {text}[/magenta]")

    def _show(self, turn: _Streaming, event: dict[str, Any]) -> bool:
        """Print what `event` says; False once the turn has ended with an error."""
        kind = event["type"]
        if kind == "response.created":
            turn.response, turn.first_token, turn.expecting = event["response"]["id"], None, False
            if event["response"]["previous_response_id"] is not None and turn.steered is not None:
                turn.started, turn.steered = turn.steered, None  # a successor answers the steer
        elif kind == "response.output_text.delta":
            turn.first_token = turn.first_token or time.monotonic() - turn.started
            self.console.print(event["delta"], end="", markup=False, highlight=False)
        elif kind == "response.output_item.done" and event["item"]["type"] == "function_call":
            item = event["item"]
            self.console.print(f"[yellow]→ calls {item['name']}({item['arguments']})[/yellow]")
        elif kind == "response.steer.accepted":
            turn.unanswered -= 1
            turn.expecting = True  # its successor
        elif kind == "response.steer.pending":  # it waits for tool output, which chat never sends
            turn.expecting = False
        elif kind == "response.steer.failed":
            if "id" in event["steer"]:  # accepted, then its successor could not start
                turn.expecting = False
            else:
                turn.unanswered -= 1
            self.console.print(f"\n[red]not steered: {event['error']['message']}[/red]")
        elif kind == "error":
            self.console.print(f"\n[red]{event['error']['code']}: {event['error']['message']}[/red]")
            self.previous = None if event["error"]["code"] == "previous_response_not_found" else self.previous
            return False
        elif kind in TERMINAL:
            self._finish(event["response"], turn)
            turn.response = None
        return True

    def _finish(self, response: dict[str, Any], turn: _Streaming) -> None:
        self.turns += 1
        if response["status"] != "failed":
            self.previous = response["id"]
        usage = response["usage"] or {}
        stats = TurnStats(
            seconds=time.monotonic() - turn.started,
            first_token_s=turn.first_token,
            input_tokens=usage.get("input_tokens", 0),
            cached_tokens=usage.get("input_tokens_details", {}).get("cached_tokens", 0),
            output_tokens=usage.get("output_tokens", 0),
        )
        reason = (response.get("incomplete_details") or {}).get("reason")
        ending = "" if response["status"] == "completed" else f" [{reason or response['status']}]"
        self.console.print(f"\n[dim]{stats.line(self.turns)}{escape(ending)}[/dim]")
        diagnostics = response.get("prompt_cache_diagnostics") or {}
        if diagnostics.get("type") == "cache_miss":
            self.console.print(
                f"[yellow]cache miss: {diagnostics['reason']}, "
                f"{diagnostics['cache_missed_tokens']} tokens prefilled again[/yellow]"
            )


def run(
    url: str, model: str, api_key: str | None, store: bool, instructions: str | None, lines: TextIO
) -> None:
    console = Console(highlight=False)
    session = ChatSession(url, model, api_key, store, console)
    keyboard = Keyboard(lines)
    interactive = lines.isatty()
    help_text = f"{COMMANDS}; {STEERING}" if interactive else COMMANDS
    console.print(f"[bold]Connected to {url}[/bold] as model {model}. {help_text}.")
    try:
        while True:
            console.print("[bold cyan]you>[/bold cyan] ", end="")
            text = keyboard.next()
            if text is None or text.strip() == "/quit":
                break
            if text.strip() == "/new":
                session.previous = None
                console.print("[dim]new conversation[/dim]")
                continue
            if text.strip():
                session.ask(text.strip(), instructions, keyboard if interactive else None)
    finally:
        session.close()
