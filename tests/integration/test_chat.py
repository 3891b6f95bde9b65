"""`tether chat` against a real server: streamed answers, chained turns, per-turn stats."""

from __future__ import annotations

import re
import subprocess
import sys

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


def test_chat_shows_errors_and_keeps_going(scripted_server: TetherServer) -> None:
    url = scripted_server.base_url.replace("http://", "ws://") + "/responses"
    result = subprocess.run(
        [sys.executable, "-m", "tether", "chat", "--url", url, "--model", "no-such-model"],
        input="hi\n/quit\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0
    assert "invalid_request_error: The model 'no-such-model' does not exist" in result.stdout
