"""Settings: one object, built from `tether serve` flags and `TETHER_*` environment variables.

Every limit and default of the server is declared here and passed down; nothing else reads the
environment.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tether.store.base import DEFAULT_TENANT

LOOPBACK_NAMES = frozenset({"localhost"})
TENANT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


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
        (),
        description="Bearer keys of the default tenant; when any key is set, every request needs "
        "one. Env: comma-separated.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="A file of tenants' keys, one 'TENANT KEY' per line ('#' starts a comment). "
        "A tenant sees only its own responses.",
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
    upstreams: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="OpenAI-compatible engines to serve instead of a local model: 'URL' (serves "
        "every model the engine lists) or 'NAME=URL' (serves model NAME from it). Env: comma-separated.",
    )
    upstream_model: str | None = Field(
        None, description="With one 'URL' upstream: serve just this model of it (no listing needed)."
    )
    upstream_api_key: str | None = Field(None, description="Bearer key sent to the upstream engines.")
    upstream_connect_timeout_s: float = Field(5.0, gt=0, description="Upstream connect timeout.")
    upstream_read_timeout_s: float = Field(
        300.0, gt=0, description="Longest wait for the upstream's next byte (its prefill included)."
    )
    scripted_prefill_us: float = Field(0.0, ge=0, description="Scripted model: µs per new input token.")
    scripted_decode_us: float = Field(0.0, ge=0, description="Scripted model: µs per output token.")
    scripted_overhead_ms: float = Field(0.0, ge=0, description="Scripted model: ms per response.")
    # --- WebSocket mode (spec §3, §8.1, §9) ---
    websocket: bool = Field(True, description="Serve WebSocket mode; off answers upgrades with 426.")
    http_max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest HTTP request body; a larger one gets 413."
    )
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
    ws_send_stall_s: float = Field(
        60.0,
        gt=0,
        description="A client that reads nothing for this long while events wait is disconnected "
        "(close 1013) and its responses stop.",
    )
    ws_send_queue_events: int = Field(
        256,
        ge=1,
        description="Events queued per connection before a slow reader makes generation wait.",
    )
    ws_max_queued_creates: int = Field(
        64, ge=1, description="Creates waiting to start per connection, all lanes; more get 429."
    )
    ws_max_queued_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Bytes of the creates waiting to start per connection, all lanes; a create past "
        "it gets 429 (one alone always waits).",
    )
    ws_cached_responses: int = Field(
        8,
        ge=0,
        description="Responses a connection keeps in memory to continue, besides each lane's latest (§8.2).",
    )
    ws_max_connections: int | None = Field(
        None, ge=1, description="Open WebSocket connections in total; more upgrades get 503."
    )
    ws_max_connections_per_key: int | None = Field(
        None, ge=1, description="Open WebSocket connections per API key; more upgrades get 429."
    )
    rate_limit_rps: float | None = Field(
        None,
        gt=0,
        description="Requests per second per API key (HTTP requests and WebSocket creates); "
        "more get 429 with retry-after.",
    )
    rate_limit_burst: float | None = Field(
        None, ge=1, description="Requests a key may make at once above its rate [one second's worth]."
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="On shutdown, how long running responses may finish before they are "
        "interrupted (and stored as incomplete / interrupted).",
    )
    log_level: str = Field("info", description="uvicorn / tether log level.")

    @field_validator("api_keys", "model_aliases", "upstreams", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("upstreams")
    @classmethod
    def _check_upstreams(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for spec in value:
            upstream_route(spec)  # raises with what is wrong
        return value

    @model_validator(mode="after")
    def _one_backend(self) -> Settings:
        if self.upstreams and self.model != "local":
            raise ValueError("give either --model or --upstream, not both")
        unnamed = [spec for spec in self.upstreams if upstream_route(spec)[0] is None]
        if self.upstream_model is not None and len(unnamed) != 1:
            raise ValueError("--upstream-model names the model of exactly one '--upstream URL'")
        return self

    def upstream_routes(self) -> list[tuple[str | None, str]]:
        """(model name or None to ask the engine, base URL) per upstream."""
        routes = [upstream_route(spec) for spec in self.upstreams]
        return [(name or self.upstream_model, url) for name, url in routes]

    def tenant_keys(self) -> dict[str, str]:
        """Every bearer key and the tenant it belongs to; raises ValueError naming a bad line."""
        keys = dict.fromkeys(self.api_keys, DEFAULT_TENANT)
        if self.api_keys_file is None:
            return keys
        try:
            text = self.api_keys_file.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read the keys file: {exc}") from None
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            where = f"{self.api_keys_file}, line {number}"
            if len(fields) != 2 or not TENANT_NAME.fullmatch(fields[0]):
                raise ValueError(
                    f"{where}: expected 'TENANT KEY', the tenant in letters, digits, '.', '_', '-'"
                )
            tenant, key = fields
            if keys.setdefault(key, tenant) != tenant:
                raise ValueError(f"{where}: this key already belongs to tenant {keys[key]!r}")
        return keys

    @property
    def listens_on_loopback(self) -> bool:
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


def upstream_route(spec: str) -> tuple[str | None, str]:
    """'URL' or 'NAME=URL' → (NAME or None, base URL ending in the API root, e.g. '/v1').

    A URL without a path gets '/v1', where every OpenAI-compatible engine serves; one with a path
    is taken as the API root it names (like an SDK's `base_url`)."""
    name, sep, url = spec.partition("=")
    if not sep or "://" in name:
        name, url = "", spec
    elif not name.strip():
        raise ValueError(f"upstream {spec!r}: the model name before '=' is empty")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"upstream {spec!r}: expected URL or NAME=URL with an http(s) URL")
    path = parts.path.rstrip("/") or "/v1"
    return (name.strip() or None, f"{parts.scheme}://{parts.netloc}{path}")
