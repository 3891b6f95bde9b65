"""Settings: one object, built from `tether serve` flags and `TETHER_*` environment variables.

Every limit and default of the server is declared here and passed down; nothing else reads the
environment.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOOPBACK_NAMES = frozenset({"localhost"})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TETHER_", frozen=True)

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0 picks a free one).")
    model: str = Field(
        "local",
        description="'local' (embedded SmolLM2-135M), 'scripted' (deterministic), or a .gguf path.",
    )
    db: Path = Field(Path("tether.db"), description="SQLite file for store=true responses.")
    api_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Bearer keys; when set, every request needs one. Env: comma-separated."
    )
    model_aliases: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Extra model names accepted for the served model. Env: comma-separated."
    )
    n_threads: int = Field(2, ge=1, description="CPU threads for the embedded engine.")
    n_ctx: int = Field(8192, ge=256, description="Context window of the embedded engine (tokens).")
    kv_cache_bytes: int = Field(
        2 * 1024**3,
        ge=0,
        description="Memory for KV snapshots of conversations not resident in the engine (LRU; "
        "those a live WebSocket lane will continue go last). Evicted ones are re-prefilled.",
    )
    scripted_prefill_us: float = Field(0.0, ge=0, description="Scripted model: µs per new input token.")
    scripted_decode_us: float = Field(0.0, ge=0, description="Scripted model: µs per output token.")
    scripted_overhead_ms: float = Field(0.0, ge=0, description="Scripted model: ms per response.")
    # --- WebSocket mode (spec §3, §8.1, §9) ---
    websocket: bool = Field(True, description="Serve WebSocket mode; off answers upgrades with 426.")
    ws_max_message_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest inbound message; larger ones close with 1009."
    )
    ws_max_active_responses: int = Field(
        16, ge=1, description="Responses running at once per connection, all lanes (D4)."
    )
    ws_max_named_lanes: int = Field(
        32, ge=0, description="Distinct stream_id lanes per connection, over its life (D4)."
    )
    ws_connection_cap_s: float = Field(
        3600.0, gt=0, description="Connection lifetime cap; past it new work is refused (D5)."
    )
    ws_ping_interval_s: float | None = Field(
        20.0, description="Server pings keep NAT paths open; None disables them."
    )
    ws_ping_timeout_s: float | None = Field(
        20.0, description="Close a connection whose pong is this late; None waits forever."
    )
    ws_send_queue_events: int = Field(
        256,
        ge=1,
        description="Events queued per connection before a slow reader makes generation wait.",
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="On shutdown, how long running responses may finish before they are "
        "interrupted (and stored as incomplete / interrupted).",
    )
    log_level: str = Field("info", description="uvicorn / tether log level.")

    @field_validator("api_keys", "model_aliases", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def listens_on_loopback(self) -> bool:
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False
