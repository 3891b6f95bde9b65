"""A real `tether serve` process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TetherServer:
    """Starts, stops and restarts one server process; the database path survives restarts."""

    def __init__(self, db: Path, *args: str, model: str = "scripted", api_key: str | None = None):
        self.db = db
        self.args = args
        self.model = model
        self.api_key = api_key
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = db.with_suffix(".log")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> TetherServer:
        command = [sys.executable, "-m", "tether", "serve", "--model", self.model,
                   "--port", str(self.port), "--db", str(self.db), "--log-level", "warning",
                   *self.args]  # fmt: skip
        if self.api_key:
            command += ["--api-key", self.api_key]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        """SIGTERM: uvicorn shuts down gracefully, so running responses are stored."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def client(self, **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base_url, api_key=self.api_key or "sk-unused", max_retries=0, **kwargs
        )

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "sk-unused", max_retries=0)
