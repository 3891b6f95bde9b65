"""`tether bench …`: the benchmark commands. Each writes JSON rows, a markdown table and a chart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tether.bench import report, runner, servers
from tether.bench.agents import MODES, Target

bench = typer.Typer(help="Benchmarks: run against a server by URL, or let the command start one.")
console = Console(stderr=True, soft_wrap=True)


@bench.command()
def rollout(
    url: Annotated[str | None, typer.Option(help="Tether's base URL, e.g. http://127.0.0.1:8000/v1.")] = None,
    serve: Annotated[
        str | None, typer.Option(help="Start Tether itself with this --model (local, scripted, PATH).")
    ] = None,
    peer: Annotated[str | None, typer.Option(help="Base URL of a Chat Completions peer (chat mode).")] = None,
    serve_peer: Annotated[
        bool, typer.Option(help="Start llama-cpp-python's server on the default model as the peer.")
    ] = False,
    modes: Annotated[
        str, typer.Option(help=f"Comma-separated, from {', '.join(MODES)}.")
    ] = "ws,http-stateless",
    agents: Annotated[str, typer.Option(help="Comma-separated numbers of agents running at once.")] = "1,2",
    turns: Annotated[int, typer.Option(help="Turns per rollout.")] = 20,
    repeats: Annotated[int, typer.Option(help="Runs of everything; medians are over them.")] = 1,
    max_output_tokens: Annotated[int, typer.Option(help="Output cap of every model turn.")] = 32,
    out: Annotated[Path, typer.Option(help="Folder for the JSON, table and chart.")] = Path(
        "docs/benchmarks"
    ),
    name: Annotated[str, typer.Option(help="File name stem of the outputs.")] = "rollout",
    json_out: Annotated[bool, typer.Option("--json", help="Also print the rows as JSON on stdout.")] = False,
) -> None:
    """The standard agent rollout (docs/benchmarks.md), per mode and concurrency."""
    plan = runner.Plan(
        modes=tuple(m.strip() for m in modes.split(",")),
        concurrency=tuple(int(n) for n in agents.split(",")),
        turns=turns,
        repeats=repeats,
    )
    unknown = [m for m in plan.modes if m not in MODES]
    if unknown or (url is None) == (serve is None):
        console.print(
            f"[red]Give exactly one of --url and --serve, and modes from {MODES}; got {unknown}.[/red]"
        )
        raise typer.Exit(2)
    if "chat" in plan.modes and peer is None and not serve_peer:
        console.print("[red]The chat mode needs --peer URL or --serve-peer.[/red]")
        raise typer.Exit(2)
    with _servers(url, serve, peer, serve_peer) as (tether_url, peer_url):
        targets = {mode: _target(peer_url if mode == "chat" else tether_url, max_output_tokens)
                   for mode in plan.modes}  # fmt: skip
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            rows, failures = asyncio.run(runner.run(plan, targets, progress))
    table = report.markdown(rows) + "".join(f"\nFailed: {failure}\n" for failure in failures)
    report.save_json(rows, out / f"{name}.json")
    report.chart(rows, out / f"{name}.png", f"Agent rollout, {turns} turns ({_machine()})")
    (out / f"{name}.md").write_text(f"Command: `{_command()}`\n\nMachine: {_machine()}\n\n{table}")
    console.print(table)
    console.print(f"Wrote {out / name}.json, .md and .png")
    if json_out:
        sys.stdout.buffer.write(orjson.dumps([row.to_json() for row in rows]) + b"\n")


@bench.command(name="report")
def rebuild_report(
    rows_json: Annotated[
        Path, typer.Argument(help="Rows written by a run, e.g. docs/benchmarks/rollout.json.")
    ],
    title: Annotated[str, typer.Option(help="Chart title.")] = "Agent rollout",
) -> None:
    """Rebuild the table and the chart of an earlier run from its JSON rows."""
    rows = report.load_json(rows_json)
    report.chart(rows, rows_json.with_suffix(".png"), title)
    console.print(report.markdown(rows))


@contextlib.contextmanager
def _servers(
    url: str | None, serve: str | None, peer: str | None, serve_peer: bool
) -> Iterator[tuple[str, str | None]]:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if serve is not None:
            console.print(f"Starting tether serve --model {serve} …")
            url = stack.enter_context(servers.tether(Path(tmp) / "bench.db", model=serve)).base_url
        if serve_peer:
            from tether.backends.local.model_file import locate

            console.print("Starting python -m llama_cpp.server on the default model …")
            process = servers.llama_cpp_server(locate(None).path, Path(tmp) / "peer.log")
            peer = stack.enter_context(process).base_url
        assert url is not None
        yield url, peer


def _target(base_url: str | None, max_output_tokens: int) -> Target:
    assert base_url is not None
    models = httpx.get(base_url + "/models", timeout=30).json()["data"]
    return Target(base_url=base_url, model=models[0]["id"], max_output_tokens=max_output_tokens)


def _machine() -> str:
    cores = len(os.sched_getaffinity(0))
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"


def _command() -> str:
    return "tether " + shlex.join(sys.argv[1:])
