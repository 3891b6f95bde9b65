"""`tether serve`: refuses to expose itself without a key; settings come from flags or TETHER_*."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai

from tests.conftest import SCRIPTED
from tests.server_process import TetherServer


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_a_non_loopback_address_needs_an_api_key() -> None:
    refused = serve("--host", "0.0.0.0", "--model", "scripted")
    assert refused.returncode == 2
    assert "Refusing to listen on 0.0.0.0 without an API key" in refused.stderr
    from_env = serve(env={"TETHER_HOST": "0.0.0.0", "TETHER_MODEL": "scripted"})
    assert from_env.returncode == 2


def test_invalid_settings_are_reported() -> None:
    result = serve("--model", "scripted", "--port", "70000")
    assert result.returncode == 2 and "port" in result.stderr


def test_environment_variables_configure_the_server(tmp_path: Path) -> None:
    """TETHER_MODEL_ALIASES and TETHER_API_KEYS are comma-separated lists."""
    os.environ.update(TETHER_MODEL_ALIASES="gpt-5-codex,tether-test", TETHER_API_KEYS="k1,k2")
    try:
        server = TetherServer(tmp_path / "env.db").start()
    finally:
        del os.environ["TETHER_MODEL_ALIASES"], os.environ["TETHER_API_KEYS"]
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="k2", max_retries=0)
        assert {m.id for m in client.models.list().data} == {SCRIPTED, "gpt-5-codex", "tether-test"}
        assert client.responses.create(model="tether-test", input="x").model == "tether-test"
        banner = server.log_path.read_text()
        assert f"http://127.0.0.1:{server.port}/v1" in banner
        assert "model: scripted" in banner and "auth: bearer keys (2 for 1 tenant)" in banner
    finally:
        server.stop()


def test_a_uvicorn_without_the_hooks_the_guards_override_is_refused(tmp_path: Path) -> None:
    """On a uvicorn whose WebSocket protocol lacks `keepalive_timeout` (before 0.44), the guard
    against silent peers would never run: the server refuses to start, saying why."""
    (tmp_path / "sitecustomize.py").write_text(
        "from uvicorn.protocols.websockets import websockets_sansio_impl as impl\n"
        "del impl.WebSocketsSansIOProtocol.keepalive_timeout\n"
    )
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    result = serve("--model", "scripted", "--port", "0", env={"PYTHONPATH": path})
    assert result.returncode == 2
    assert "no keepalive_timeout on its WebSocket protocol" in result.stderr
