"""`tether serve`: the command line. Flags override `TETHER_*` environment variables."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console

from tether.app import build_app
from tether.bench.cli import bench
from tether.config import Settings
from tether.server.lifecycle import FINAL_CLOSE_S, GracefulServer
from tether.server.ws_protocol import guarded_protocol

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(bench, name="bench")
console = Console(stderr=True, soft_wrap=True)  # paths and URLs stay on one line

MODEL_HELP = """\
'local' (default): the embedded SmolLM2-135M-Instruct through llama.cpp.
'scripted': a deterministic model for tests and benchmarks. Its rules: with no callable function
tool or tool_choice 'none' it answers text; with tool_choice 'required' or a named function it
calls that tool (or the first one) with arguments that satisfy the tool's schema; with 'auto' it
calls the first tool when the last input item is a user message, and answers text after a tool
output. Text is exactly max_output_tokens tokens long when set (else 16); a token is 4 bytes.
PATH.gguf: any other GGUF model file."""


@app.callback()
def main_callback() -> None:
    """Tether: the OpenAI Responses API over HTTP and WebSocket."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [8000].")] = None,
    model: Annotated[str | None, typer.Option(help=MODEL_HELP)] = None,
    db: Annotated[Path | None, typer.Option(help="SQLite file for stored responses [tether.db].")] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(help="Require 'Authorization: Bearer KEY'; repeat for several keys."),
    ] = None,
    api_keys_file: Annotated[
        Path | None,
        typer.Option(
            help="Tenants' keys, one 'TENANT KEY' per line; each tenant sees only its own responses."
        ),
    ] = None,
    model_alias: Annotated[
        list[str] | None, typer.Option(help="Another model name to accept; repeatable.")
    ] = None,
    upstream: Annotated[
        list[str] | None,
        typer.Option(
            help="Serve an OpenAI-compatible engine instead of a local model: URL (every model it "
            "lists) or NAME=URL (model NAME from it); repeatable."
        ),
    ] = None,
    upstream_model: Annotated[
        str | None, typer.Option(help="With one --upstream URL: serve only this model of it.")
    ] = None,
    upstream_api_key: Annotated[str | None, typer.Option(help="Bearer key for the upstream engines.")] = None,
    upstream_read_timeout_s: Annotated[
        float | None, typer.Option(help="Longest wait for an upstream's next byte, prefill included [300].")
    ] = None,
    n_threads: Annotated[int | None, typer.Option(help="Engine CPU threads [2].")] = None,
    n_ctx: Annotated[int | None, typer.Option(help="Engine context window in tokens [8192].")] = None,
    kv_cache_bytes: Annotated[
        int | None, typer.Option(help="Engine memory for KV snapshots of idle conversations [2 GiB].")
    ] = None,
    scripted_prefill_us: Annotated[
        float | None, typer.Option(help="Scripted model: µs per uncached input token [0].")
    ] = None,
    scripted_decode_us: Annotated[
        float | None, typer.Option(help="Scripted model: µs per output token [0].")
    ] = None,
    scripted_overhead_ms: Annotated[
        float | None, typer.Option(help="Scripted model: fixed ms per response [0].")
    ] = None,
    websocket: Annotated[
        bool | None,
        typer.Option("--websocket/--no-websocket", help="Serve WebSocket mode [on]; off answers 426."),
    ] = None,
    ws_connection_cap_s: Annotated[
        float | None, typer.Option(help="WebSocket connection lifetime cap in seconds [3600].")
    ] = None,
    http_max_body_bytes: Annotated[
        int | None, typer.Option(help="Largest HTTP request body [67108864]; over it: 413.")
    ] = None,
    ws_max_message_bytes: Annotated[
        int | None, typer.Option(help="Largest inbound WebSocket message [67108864]; over it: 1009.")
    ] = None,
    ws_max_active_responses: Annotated[
        int | None, typer.Option(help="Responses running at once per connection [16].")
    ] = None,
    ws_max_named_lanes: Annotated[
        int | None, typer.Option(help="Distinct stream_id lanes per connection [32].")
    ] = None,
    ws_send_stall_s: Annotated[
        float | None, typer.Option(help="Disconnect a client that has read nothing for this long [60].")
    ] = None,
    ws_send_queue_events: Annotated[
        int | None, typer.Option(help="Outbound events queued per connection before generation waits [256].")
    ] = None,
    ws_max_queued_creates: Annotated[
        int | None, typer.Option(help="Creates waiting to start per connection; more get 429 [64].")
    ] = None,
    ws_max_connections: Annotated[
        int | None, typer.Option(help="Open WebSocket connections in total; more get 503 [no limit].")
    ] = None,
    ws_max_connections_per_key: Annotated[
        int | None, typer.Option(help="Open WebSocket connections per API key; more get 429 [no limit].")
    ] = None,
    rate_limit_rps: Annotated[
        float | None,
        typer.Option(
            help="Requests per second per API key, HTTP and WebSocket creates; more get 429 [no limit]."
        ),
    ] = None,
    rate_limit_burst: Annotated[
        float | None, typer.Option(help="Requests a key may make at once above its rate [1 s worth].")
    ] = None,
    shutdown_grace_s: Annotated[
        float | None,
        typer.Option(help="Seconds running responses get to finish at shutdown [10]."),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="Log level [info].")] = None,
) -> None:
    """Serve the Responses API."""
    # Each flag is named after its setting; the two repeatable ones are singular on the CLI.
    overrides: dict[str, Any] = dict(locals())
    overrides["api_keys"] = tuple(overrides.pop("api_key") or ()) or None
    overrides["model_aliases"] = tuple(overrides.pop("model_alias") or ()) or None
    overrides["upstreams"] = tuple(overrides.pop("upstream") or ()) or None
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
        keys = settings.tenant_keys()
    except (ValidationError, ValueError) as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None
    if not settings.listens_on_loopback and not keys:
        console.print(
            f"[red]Refusing to listen on {settings.host} without an API key.[/red] "
            "Pass --api-key KEY or --api-keys-file PATH to serve beyond this machine."
        )
        raise typer.Exit(2)
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    # httpx logs every upstream request at INFO; Tether logs the ones that fail.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    app = build_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
        ws=guarded_protocol(settings.ws_send_stall_s),
        ws_max_size=settings.ws_max_message_bytes,  # over it: close 1009 (spec §3.4)
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_per_message_deflate=True,  # negotiated only when the client offers it
        timeout_graceful_shutdown=FINAL_CLOSE_S,  # after GracefulServer's own drain
    )
    server = GracefulServer(config, app, settings.shutdown_grace_s)
    _announce(settings, keys)
    server.run()


@app.command()
def chat(
    url: Annotated[
        str, typer.Option(help="The server's WebSocket URL.")
    ] = "ws://127.0.0.1:8000/v1/responses",
    model: Annotated[str, typer.Option(help="Model name to send.")] = "SmolLM2-135M-Instruct",
    api_key: Annotated[str | None, typer.Option(envvar="TETHER_API_KEY", help="Bearer key.")] = None,
    store: Annotated[bool, typer.Option("--store/--no-store", help="Store the responses [no].")] = False,
    instructions: Annotated[str | None, typer.Option(help="Instructions sent with every turn.")] = None,
) -> None:
    """Chat with a server over one WebSocket; each turn shows its latency and cached tokens."""
    from tether import chat as chat_client  # the client needs none of the server's imports

    chat_client.run(url, model, api_key, store, instructions, sys.stdin)


def _announce(settings: Settings, keys: dict[str, str]) -> None:
    url = f"http://{settings.host}:{settings.port}/v1"
    tenants = len(set(keys.values()))
    auth = f"bearer keys ({len(keys)} for {tenants} tenant{'s' * (tenants != 1)})" if keys else "none"
    console.print(f"[bold]Tether[/bold] serving the Responses API at [cyan]{url}[/cyan]")
    model = ", ".join(settings.upstreams) if settings.upstreams else settings.model
    console.print(f"  model: {model}\n  store: sqlite {settings.db}\n  auth: {auth}")


def main() -> None:
    app()
