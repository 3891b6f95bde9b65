"""Codex CLI (`codex exec`) against Tether over WebSocket: the scripted model calling a tool, and
the local model behind Codex's default timeouts.

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
from typing import Any

import pytest

from tests.integration.test_metrics import scrape, value
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
stream_max_retries = {stream_max_retries}
{extra}"""


RAN_OUT_OF_ROOM = "Incomplete response returned, reason: max_output_tokens"


@pytest.fixture
def codex_home() -> Iterator[Path]:
    """Outside the system temp dir: Codex refuses to put its helper binaries there."""
    home = ROOT / ".cache" / f"codex-home-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def codex_exec(
    server: TetherServer, home: Path, workdir: Path, prompt: str, *, timeout: float, **config: object
) -> list[dict[str, Any]]:
    """`codex exec` against `server` over WebSocket: its JSON events, after checking that it never
    fell back to HTTP and that its turn ended well, or, on the local model, at most ran out of
    room (a 135M model may ramble until the context is full, which Codex calls a failed turn)."""
    assert CODEX.exists(), f"Codex CLI not found at {CODEX}: run `make test-codex`"
    settings = {"stream_max_retries": 0, "extra": "", **config}
    (home / "config.toml").write_text(CONFIG.format(base_url=server.base_url, **settings))
    result = subprocess.run(
        [str(CODEX), "exec", "--json", "--ephemeral", "--skip-git-repo-check",
         "--disable", "unbounded_connection_retries", prompt],
        cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "CODEX_HOME": str(home), "TETHER_API_KEY": "sk-codex"},
    )  # fmt: skip
    everything = result.stdout + result.stderr
    assert "Falling back from WebSockets" not in everything
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    failures = [e["error"]["message"] for e in events if e["type"] == "turn.failed"]
    assert result.returncode == 0 or failures == [RAN_OUT_OF_ROOM], everything
    return events


def test_codex_exec_runs_a_tool_turn_over_websocket(tmp_path: Path, codex_home: Path) -> None:
    server = TetherServer(tmp_path / "codex.db", "--model-alias", "tether-test", api_key="sk-codex").start()
    try:
        events = codex_exec(
            server, codex_home, tmp_path, "Run a command and tell me what it printed.", timeout=180,
            extra="websocket_connect_timeout_ms = 5000\n",
        )  # fmt: skip
    finally:
        server.stop()
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    commands = [i for i in items if i["type"] == "command_execution"]
    assert commands, items  # the scripted model called exec_command and Codex ran it
    assert any(i["type"] == "agent_message" and i["text"] for i in items)
    usage = next(e["usage"] for e in events if e["type"] == "turn.completed")
    assert usage["cached_input_tokens"] > 0  # the prewarm and the chain stayed on the socket


@pytest.mark.local_model
@pytest.mark.timeout(900)
def test_codex_keeps_its_warm_up_on_the_local_model(tmp_path: Path, codex_home: Path) -> None:
    """The local model prefills Codex's ~5,700-token prefix in 20-30 s, longer than Codex waits for
    a warm-up's answer (its connect timeout, default here). Answered at once, the warm-up is not
    abandoned: one socket, the warm-up and one turn, and the turn finds the prefix cached. Were it
    abandoned, Codex would resend everything (more responses), or fall back to HTTP.

    The context is cut to 7,000 tokens (the turn's prompt is ~6,400) so that a rambling answer
    ends within minutes. Codex's multi-agent namespace (~2,800 tokens more) is not offered: with it
    the prompt would not fit the model's 8,192 tokens at all."""
    server = TetherServer(
        tmp_path / "codex.db", "--model-alias", "tether-test", "--n-ctx", "7000", "--no-tool-namespaces",
        api_key="sk-codex", model="local",
    ).start()  # fmt: skip
    try:
        prompt = "Reply with the single word pong."
        codex_exec(server, codex_home, tmp_path, prompt, timeout=800, stream_max_retries=2)
        metrics = scrape(server)
    finally:
        server.stop()
    responses = {labels: n for (name, labels), n in metrics.items() if name == "tether_responses_total"}
    assert sum(responses.values()) == 2, responses  # the warm-up and the turn, on one socket
    assert value(metrics, "tether_cached_tokens_total", transport="ws") > 5000  # the warm-up's prefill
