"""`tether chat`: a terminal client that keeps one WebSocket and continues each turn.

Every turn sends only the new user message with `previous_response_id`, the way agents use
WebSocket mode, and prints what that costs: time to first token, total time, and how many of
the input tokens the server already had cached.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from websockets.sync.client import ClientConnection, connect

TERMINAL = {"response.completed", "response.failed", "response.incomplete"}
COMMANDS = "/new starts a new conversation, /quit (or end of input) leaves"


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

    def ask(self, text: str, instructions: str | None) -> None:
        create: dict[str, Any] = {"type": "response.create", "model": self.model, "store": self.store,
                                  "input": [{"role": "user", "content": text}]}  # fmt: skip
        if instructions:
            create["instructions"] = instructions
        if self.previous:
            create["previous_response_id"] = self.previous
        started = time.monotonic()
        self.socket.send(json.dumps(create))
        first_token: float | None = None
        for event in self._events():
            kind = event["type"]
            if kind == "response.output_text.delta":
                first_token = first_token or time.monotonic() - started
                self.console.print(event["delta"], end="", markup=False, highlight=False)
            elif kind == "response.output_item.done" and event["item"]["type"] == "function_call":
                item = event["item"]
                self.console.print(f"[yellow]→ calls {item['name']}({item['arguments']})[/yellow]")
            elif kind == "error":
                self.console.print(f"\n[red]{event['error']['code']}: {event['error']['message']}[/red]")
                self.previous = (
                    None if event["error"]["code"] == "previous_response_not_found" else self.previous
                )
                return
            elif kind in TERMINAL:
                self._finish(event["response"], started, first_token)
                return

    def _events(self) -> Iterator[dict[str, Any]]:
        while True:
            event: dict[str, Any] = json.loads(self.socket.recv())
            yield event

    def _finish(self, response: dict[str, Any], started: float, first_token: float | None) -> None:
        self.turns += 1
        if response["status"] != "failed":
            self.previous = response["id"]
        usage = response["usage"] or {}
        stats = TurnStats(
            seconds=time.monotonic() - started,
            first_token_s=first_token,
            input_tokens=usage.get("input_tokens", 0),
            cached_tokens=usage.get("input_tokens_details", {}).get("cached_tokens", 0),
            output_tokens=usage.get("output_tokens", 0),
        )
        ending = "" if response["status"] == "completed" else f" [{response['status']}]"
        self.console.print(f"\n[dim]{stats.line(self.turns)}{ending}[/dim]")


def run(
    url: str, model: str, api_key: str | None, store: bool, instructions: str | None, lines: TextIO
) -> None:
    console = Console(highlight=False)
    session = ChatSession(url, model, api_key, store, console)
    console.print(f"[bold]Connected to {url}[/bold] as model {model}. {COMMANDS}.")
    try:
        while True:
            console.print("[bold cyan]you>[/bold cyan] ", end="")
            text = lines.readline()
            if not text or text.strip() == "/quit":
                break
            if text.strip() == "/new":
                session.previous = None
                console.print("[dim]new conversation[/dim]")
                continue
            if text.strip():
                session.ask(text.strip(), instructions)
    finally:
        session.close()
