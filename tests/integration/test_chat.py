"""`tether chat` against a real server: streamed answers, chained turns, per-turn stats."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer


def chat(server: TetherServer, typed: str) -> str:
    url = server.base_url.replace("http://", "ws://") + "/responses"
    result = subprocess.run(
        [sys.executable, "-m", "tether", "chat", "--url", url, "--model", SCRIPTED],
        input=typed, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_chat_continues_the_conversation_and_reports_cached_tokens(scripted_server: TetherServer) -> None:
    output = chat(scripted_server, "Hello there.\nAnd again.\n/new\nFresh.\n")
    stats = re.findall(
        r"turn (\d) · first token [\d.]+ s · [\d.]+ s · (\d+) in \((\d+) cached\) · 16 out", output
    )
    assert [(turn, int(cached) > 0) for turn, _, cached in stats] == [("1", False), ("2", True), ("3", False)]
    assert "new conversation" in output
    assert "cache miss" not in output  # each turn compared with the one before: all hits


def test_chat_shows_errors_and_keeps_going(scripted_server: TetherServer) -> None:
    url = scripted_server.base_url.replace("http://", "ws://") + "/responses"
    result = subprocess.run(
        [sys.executable, "-m", "tether", "chat", "--url", url, "--model", "no-such-model"],
        input="hi\n/quit\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0
    assert "invalid_request_error: The model 'no-such-model' does not exist" in result.stdout


class Terminal:
    """`tether chat` on a pseudo-terminal, as a person runs it: lines typed, the screen read."""

    ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

    def __init__(self, server: TetherServer) -> None:
        url = server.base_url.replace("http://", "ws://") + "/responses"
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the chat, on the terminal
            command = [sys.executable, "-m", "tether", "chat", "--url", url, "--model", SCRIPTED]
            os.execve(sys.executable, command, {**os.environ, "COLUMNS": "200"})  # no wrapped lines
        self.screen = ""

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\n")

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.screen)) is None:
            assert time.monotonic() < deadline, f"{pattern!r} never showed:\n{self.screen}"
            if select.select([self.fd], [], [], 0.05)[0]:
                self.screen += self.ANSI.sub("", os.read(self.fd, 65536).decode(errors="replace"))
        return found

    def close(self) -> int:
        self.type("/quit")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_a_line_typed_while_the_answer_streams_steers_it(slow_server: TetherServer) -> None:
    terminal = Terminal(slow_server)
    try:
        terminal.wait_for("type while an answer streams to steer it.*\n.*you> ")
        terminal.type("Tell me a long story.")
        terminal.wait_for(r"story\.\r?\n\w{3} ")  # its first word has streamed
        terminal.type("Keep it short.")
        steered = terminal.wait_for(r"turn 1 · .* (\d+) out \[steered\]")
        successor = terminal.wait_for(r"turn 2 · first token [\d.]+ s · [\d.]+ s · (\d+) in \((\d+) cached\)")
    finally:
        assert terminal.close() == 0
    assert "↪ steering: Keep it short." in terminal.screen
    assert int(steered.group(1)) < 16  # stopped before its 16 words
    assert 0 < int(successor.group(2)) < int(successor.group(1))  # it continued the steered answer
