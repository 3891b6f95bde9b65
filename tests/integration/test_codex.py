"""Codex CLI (`codex exec`) against Tether over WebSocket, with the scripted model calling a tool.

Heavy (a ~400 MB npm package): it runs with `make test-codex`, not in the default suite.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import TetherServer

pytestmark = pytest.mark.codex

ROOT = Path(__file__).resolve().parents[2]
CODEX = Path(os.environ.get("TETHER_CODEX_BIN", ROOT / ".cache/codex/node_modules/.bin/codex"))
CONFIG = """\
model = "tether-test"
model_provider = "tether"
approval_policy = "never"
sandbox_mode = "read-only"

[model_providers.tether]
name = "Tether"
base_url = "{base_url}"
wire_api = "responses"
env_key = "TETHER_API_KEY"
supports_websockets = true
request_max_retries = 0
stream_max_retries = 0
websocket_connect_timeout_ms = 5000
"""


@pytest.fixture
def codex_home() -> Iterator[Path]:
    """Outside the system temp dir: Codex refuses to put its helper binaries there."""
    home = ROOT / ".cache" / f"codex-home-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_codex_exec_runs_a_tool_turn_over_websocket(tmp_path: Path, codex_home: Path) -> None:
    assert CODEX.exists(), f"Codex CLI not found at {CODEX}: run `make test-codex`"
    server = TetherServer(tmp_path / "codex.db", "--model-alias", "tether-test", api_key="sk-codex").start()
    try:
        (codex_home / "config.toml").write_text(CONFIG.format(base_url=server.base_url))
        result = subprocess.run(
            [str(CODEX), "exec", "--json", "--ephemeral", "--skip-git-repo-check",
             "--disable", "unbounded_connection_retries", "Run a command and tell me what it printed."],
            cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
            env={**os.environ, "CODEX_HOME": str(codex_home), "TETHER_API_KEY": "sk-codex"},
        )  # fmt: skip
    finally:
        server.stop()
    everything = result.stdout + result.stderr
    assert "Falling back from WebSockets" not in everything
    assert result.returncode == 0, everything
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    commands = [i for i in items if i["type"] == "command_execution"]
    assert commands, items  # the scripted model called exec_command and Codex ran it
    assert any(i["type"] == "agent_message" and i["text"] for i in items)
    usage = next(e["usage"] for e in events if e["type"] == "turn.completed")
    assert usage["cached_input_tokens"] > 0  # the prewarm and the chain stayed on the socket
