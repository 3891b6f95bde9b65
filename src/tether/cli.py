"""`tether serve`: the command line. Flags override `TETHER_*` environment variables."""

from __future__ import annotations

import inspect
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from tether.bench.cli import bench
from tether.config import Declaration, Settings, declarations, masked
from tether.logs import configure_logging, json_line
from tether.server.processes import Supervisor, bind, serve_process
from tether.server.ws_protocol import IncompatibleUvicorn, guarded_protocol

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
app.add_typer(bench, name="bench")
console = Console(stderr=True, soft_wrap=True)  # paths and URLs stay on one line


@app.callback()
def main_callback() -> None:
    """Tether: the OpenAI Responses API over HTTP and WebSocket."""


def serve(**options: Any) -> None:
    """Serve the Responses API. Every option can also be set as TETHER_<NAME> (see the README)."""
    try:
        settings = Settings.load({name: _cli_value(value) for name, value in options.items()})
        keys = settings.auth.tenant_keys()
    except (ValidationError, ValueError) as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from None
    if not settings.listens_on_loopback and not keys:
        console.print(
            f"[red]Refusing to listen on {settings.listening.host} without an API key.[/red] "
            "Pass --api-key KEY or --api-keys-file PATH to serve beyond this machine."
        )
        raise typer.Exit(2)
    configure_logging(settings.listening.log_level, settings.listening.log_format)
    try:
        guarded_protocol(settings.websocket.send_stall_s)
    except IncompatibleUvicorn as exc:
        console.print(f"[red]Cannot serve WebSockets safely:[/red] {exc}")
        raise typer.Exit(2) from None
    if settings.listening.workers == 1:
        _announce(settings, keys, settings.listening.port)
        serve_process(settings)
        return
    sock = bind(settings)
    _announce(settings, keys, sock.getsockname()[1])
    raise typer.Exit(Supervisor(settings, sock).run())


def _cli_value(value: Any) -> Any:
    """Typer's value for an option not given is None; a repeatable one's is an empty list."""
    if isinstance(value, list):
        return tuple(value) or None
    return value


def _option(declaration: Declaration) -> inspect.Parameter:
    """`serve`'s parameter for one setting: None unless given, so the environment can apply."""
    value_type = declaration.value_type
    if value_type is bool:
        no = "--no-" + declaration.option.removeprefix("--")
        info = typer.Option(f"{declaration.option}/{no}", help=declaration.help, show_default=False)
    else:
        info = typer.Option(declaration.option, help=declaration.help, metavar=declaration.metavar)
    annotation = list[value_type] if declaration.is_list else value_type  # type: ignore[valid-type]
    info.help = f"{info.help} Default: {declaration.default_text().strip('`')}."
    return inspect.Parameter(
        declaration.flag,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[annotation | None, info],
    )


serve.__signature__ = inspect.Signature([_option(d) for d in declarations()])  # type: ignore[attr-defined]
serve.__annotations__ = {p.name: p.annotation for p in serve.__signature__.parameters.values()}  # type: ignore[attr-defined]
app.command()(serve)


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


def _announce(settings: Settings, keys: dict[str, str], port: int) -> None:
    url = f"http://{settings.listening.host}:{port}/v1"
    tenants = len(set(keys.values()))
    auth = f"bearer keys ({len(keys)} for {tenants} tenant{'s' * (tenants != 1)})" if keys else "none"
    model = ", ".join(settings.upstream.urls) if settings.upstream.urls else settings.models.model
    kind, where = settings.storage.location()
    workers = settings.listening.workers
    if settings.listening.log_format == "json":  # a collector takes only JSON lines
        details = f"model: {model}; store: {kind} {masked(where)}; auth: {auth}; workers: {workers}"
        print(json_line("tether", f"serving the Responses API at {url} ({details})"), flush=True)
        return
    console.print(f"[bold]Tether[/bold] serving the Responses API at [cyan]{url}[/cyan]")
    console.print(f"  model: {model}\n  store: {kind} {masked(where)}\n  auth: {auth}")
    if workers > 1:
        console.print(f"  workers: {workers}")
    console.print(f"  inspector: [cyan]{url.removesuffix('/v1')}/inspector[/cyan]")


def main() -> None:
    app()
