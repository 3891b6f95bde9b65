"""A real `tether serve` process for tests, with SDK clients bound to it."""

from __future__ import annotations

from pathlib import Path

import openai

from tether.bench.servers import ServerProcess, tether


class TetherServer(ServerProcess):
    """Starts, stops and restarts one server process; the port and database survive restarts."""

    def __init__(
        self,
        db: Path,
        *args: str,
        model: str | None = "scripted",
        api_key: str | None = None,
        store: str | None = None,
    ):
        spec = tether(db, *args, model=model, api_key=api_key, store=store)
        super().__init__(spec.command, spec.port, spec.ready_path, spec.log_path)
        self.db = db
        self.api_key = api_key

    def start(self) -> TetherServer:
        super().start()
        return self

    def __enter__(self) -> TetherServer:
        return self.start()

    def client(self, **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base_url, api_key=self.api_key or "sk-unused", max_retries=0, **kwargs
        )

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key or "sk-unused", max_retries=0)
