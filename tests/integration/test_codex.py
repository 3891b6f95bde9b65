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
from tests.recording_proxy import Recorder
from tests.server_process import TetherServer
from tether.bench.servers import bench_engine
from tether.protocol.tools import CUSTOM_INPUT

pytestmark = pytest.mark.codex

ROOT = Path(__file__).resolve().parents[2]
CODEX = Path(os.environ.get("TETHER_CODEX_BIN", ROOT / ".cache/codex/node_modules/.bin/codex"))
CONFIG = """\
{top}model = "tether-test"
model_provider = "tether"
approval_policy = "never"
sandbox_mode = "{sandbox}"

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
# Codex gives a model it does not know no editing tool; its catalog entry for the model says
# which one it takes. This one describes `tether-test` as taking the freeform (custom) one.
CATALOG_ENTRY = {
    "slug": "tether-test", "display_name": "Tether test", "description": "A model behind Tether.",
    "base_instructions": "You are a coding agent. Use the tools you are given.",
    "apply_patch_tool_type": "freeform", "shell_type": "shell_command", "visibility": "list",
    "supported_in_api": True, "priority": 1, "supported_reasoning_levels": [],
    "default_reasoning_level": "medium", "context_window": 100000, "input_modalities": ["text"],
    "truncation_policy": {"mode": "tokens", "limit": 10000}, "supports_parallel_tool_calls": True,
    "support_verbosity": True, "experimental_supported_tools": [],
}  # fmt: skip


@pytest.fixture
def codex_home() -> Iterator[Path]:
    """Outside the system temp dir: Codex refuses to put its helper binaries there."""
    home = ROOT / ".cache" / f"codex-home-{uuid.uuid4().hex[:8]}"
    home.mkdir(parents=True)
    yield home
    shutil.rmtree(home, ignore_errors=True)


def with_catalog(home: Path) -> str:
    """The config line (a top-level one) that has Codex read `CATALOG_ENTRY` (written into `home`)."""
    path = home / "models.json"
    path.write_text(json.dumps({"models": [CATALOG_ENTRY]}))
    return f'model_catalog_json = "{path}"\n'


def codex_exec(
    server: TetherServer, home: Path, workdir: Path, prompt: str, *, timeout: float, **config: object
) -> tuple[list[dict[str, Any]], str]:
    """`codex exec` against `server` over WebSocket: its JSON events and all it printed, after
    checking that it never fell back to HTTP and that its turn ended well, or, on the local model,
    at most ran out of room (a 135M model may ramble until the context is full, which Codex calls
    a failed turn)."""
    assert CODEX.exists(), f"Codex CLI not found at {CODEX}: run `make test-codex`"
    settings = {"stream_max_retries": 0, "extra": "", "top": "", "sandbox": "read-only", **config}
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
    return events, everything


def scripted_server(folder: Path, *flags: str) -> TetherServer:
    return TetherServer(folder / "codex.db", "--model-alias", "tether-test", *flags, api_key="sk-codex")


def test_codex_exec_runs_a_tool_turn_over_websocket(tmp_path: Path, codex_home: Path) -> None:
    server = scripted_server(tmp_path).start()
    try:
        events, _ = codex_exec(
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


def test_codex_applies_a_patch_written_as_a_custom_tool_call(tmp_path: Path, codex_home: Path) -> None:
    """The scripted model calls Codex's freeform `apply_patch` with the patch the prompt quotes;
    Codex gets a `custom_tool_call` and applies it to the workspace."""
    patch = "*** Begin Patch\n*** Add File: hello.txt\n+hello from tether\n*** End Patch\n"
    prompt = f"Use apply_patch with ```\n{patch}```"
    with scripted_server(tmp_path) as server:
        events, _ = codex_exec(server, codex_home, tmp_path, prompt, timeout=180, sandbox="workspace-write",
                               top=with_catalog(codex_home))  # fmt: skip
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    changes = [item for item in items if item["type"] == "file_change"]
    assert changes and changes[0]["status"] == "completed", events
    assert (tmp_path / "hello.txt").read_text() == "hello from tether\n"


def test_codex_runs_a_namespaced_tool_the_model_called(tmp_path: Path, codex_home: Path) -> None:
    """The scripted model calls `close_agent` of Codex's `multi_agent_v1` namespace; the call
    reaches Codex as `{"namespace": "multi_agent_v1", "name": "close_agent"}`, and Codex's
    handler for it reads its arguments (the scripted id, `example`, is no agent id: Codex says
    so, in words of its pinned version, and the turn goes on with that as the tool's output)."""
    with scripted_server(tmp_path) as server:
        events, printed = codex_exec(server, codex_home, tmp_path, "Use close_agent now.", timeout=180)
    assert "invalid agent id example" in printed
    assert any(e["type"] == "turn.completed" for e in events)


def test_codex_s_whole_tool_list_reaches_an_engine_as_functions(tmp_path: Path, codex_home: Path) -> None:
    """Everything Codex offers (its functions, the multi-agent namespace, the freeform
    `apply_patch`, and `web_search`, which Tether cannot run) through the upstream path: the
    engine gets every function, namespaced ones by their model names, the custom tool as a
    function of one string, and no hosted tool; the turn completes over the socket."""
    engine = bench_engine(tmp_path / "engine.log")
    with engine, Recorder(engine, tmp_path) as recorder:
        upstream = ("--upstream", f"tether-test={recorder.base_url}")
        with TetherServer(tmp_path / "codex.db", *upstream, api_key="sk-codex", model=None) as server:
            events, _ = codex_exec(server, codex_home, tmp_path, "Say hello.", timeout=180,
                                   top=with_catalog(codex_home))  # fmt: skip
        sent = recorder.completions()
    assert any(e["type"] == "turn.completed" for e in events)
    tools = {tool["function"]["name"]: tool for tool in sent[-1]["json"]["tools"]}
    assert all(tool["type"] == "function" for tool in tools.values())
    expected = {"exec_command", "apply_patch", "multi_agent_v1__spawn_agent", "multi_agent_v1__close_agent"}
    assert expected <= set(tools), sorted(tools)
    assert tools["apply_patch"]["function"]["parameters"] == CUSTOM_INPUT
    assert not any("web_search" in name for name in tools)


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
