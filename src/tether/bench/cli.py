"""`tether bench …`: the benchmark commands. Each writes JSON rows, a markdown table and a chart."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tether.bench import load, report, runner, servers, store_costs
from tether.bench import soak as soak_run
from tether.bench import steer as steer_run
from tether.bench import warm_up as warm_up_run
from tether.bench.agents import MODES, Target
from tether.bench.otlp_sink import OtlpSink
from tether.bench.postgres import postgres_server

bench = typer.Typer(help="Benchmarks: run against a server by URL, or let the command start one.")
console = Console(stderr=True, soft_wrap=True)

JSON_OUT = typer.Option("--json", help="Also print the rows as JSON on stdout.")
# Results go where the user says; by default not into the published ones (`make bench` writes
# those, with --out docs/benchmarks).
NGINX_TEMPLATE = Path(__file__).parents[3] / "deploy" / "nginx.conf.template"
SOAK_ORPHAN_AFTER_S = 3.0  # replicas killed by the soak's restarts: their responses end this soon
DEFAULT_OUT = Path("bench-results")
OUT = typer.Option(help="Folder for the JSON rows, the markdown table and the PNG chart.")
INSTALL_HINT = "pip install 'tether[bench]' (in a checkout: make bench, or pip install -e '.[bench]')"
UPSTREAM = "upstream"  # `--serve upstream`: Tether in front of the peer
URL_HELP = "Tether's base URL; without it the command starts `tether serve --model scripted`."
BASELINE = "baseline"  # the label of the modes run against `--baseline`


@bench.callback()
def needs_the_bench_extra() -> None:
    """Every benchmark ends in a chart: without matplotlib, say how to install it before running."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        console.print(
            f"[red]tether bench needs matplotlib, which comes with its extra:[/red] {escape(INSTALL_HINT)}"
        )
        raise typer.Exit(2) from None


@bench.command()
def rollout(
    url: Annotated[str | None, typer.Option(help="Tether's base URL, e.g. http://127.0.0.1:8000/v1.")] = None,
    serve: Annotated[
        str | None,
        typer.Option(
            help="Start Tether itself with this --model (local, scripted, PATH), or 'upstream': in front "
            "of the peer (--peer or --serve-peer)."
        ),
    ] = None,
    peer: Annotated[str | None, typer.Option(help="Base URL of a Chat Completions peer (chat mode).")] = None,
    serve_peer: Annotated[
        bool, typer.Option(help="Start llama-cpp-python's server on the default model as the peer.")
    ] = False,
    serve_args: Annotated[
        str, typer.Option(help="More options for the Tether it starts, e.g. '--no-tune-threads'.")
    ] = "",
    busy_cores: Annotated[
        int, typer.Option(help="Keep this many cores busy with other processes while the agents run.")
    ] = 0,
    modes: Annotated[
        str, typer.Option(help=f"Comma-separated, from {', '.join(MODES)}.")
    ] = "ws,http-stateless",
    agents: Annotated[str, typer.Option(help="Comma-separated numbers of agents running at once.")] = "1,2",
    turns: Annotated[int, typer.Option(help="Turns per rollout.")] = 20,
    repeats: Annotated[int, typer.Option(help="Runs of everything; medians are over them.")] = 1,
    max_output_tokens: Annotated[int, typer.Option(help="Output cap of every model turn.")] = 32,
    out: Annotated[Path, OUT] = DEFAULT_OUT,
    name: Annotated[str, typer.Option(help="File name stem of the outputs.")] = "rollout",
    json_out: Annotated[bool, JSON_OUT] = False,
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
    if ("chat" in plan.modes or serve == UPSTREAM) and peer is None and not serve_peer:
        console.print("[red]The chat mode and --serve upstream need --peer URL or --serve-peer.[/red]")
        raise typer.Exit(2)
    with _servers(url, serve, peer, serve_peer, shlex.split(serve_args)) as running:
        urls = {mode: running.peer_url if mode == "chat" else running.tether_url for mode in plan.modes}
        targets = {mode: _target(mode_url, max_output_tokens) for mode, mode_url in urls.items()}
        with _progress() as progress, servers.busy_cores(busy_cores):
            rows, failures = asyncio.run(runner.run(plan, targets, progress))
    table = report.markdown(rows) + "".join(f"\nFailed: {failure}\n" for failure in failures)
    report.chart(rows, out / f"{name}.png", f"Agent rollout, {turns} turns ({_machine()})")
    _write(out, name, table, [row.to_json() for row in rows], json_out)


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


@dataclass(frozen=True)
class Servers:
    tether_url: str
    tether_pid: int | None  # when the benchmark started it, so its memory can be read
    peer_url: str | None


@contextlib.contextmanager
def _servers(
    url: str | None,
    serve: str | None,
    peer: str | None = None,
    serve_peer: bool = False,
    serve_args: list[str] | None = None,
) -> Iterator[Servers]:
    """What the benchmark measures. `serve` "upstream" puts Tether in front of the peer;
    `serve_args` go to the Tether it starts."""
    pid = None
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if serve_peer:
            # Late: the other benchmarks run without the local engine installed.
            from tether.backends.local.model_file import locate

            console.print("Starting python -m llama_cpp.server on the default model …")
            process = servers.llama_cpp_server(locate(None).path, Path(tmp) / "peer.log")
            peer = stack.enter_context(process).base_url
        if serve is not None:
            in_front = serve == UPSTREAM
            console.print(
                f"Starting tether serve {f'--upstream {peer}' if in_front else f'--model {serve}'} …"
            )
            more = serve_args or []
            tether = (
                servers.tether(Path(tmp) / "bench.db", "--upstream", str(peer), *more, model=None)
                if in_front
                else servers.tether(Path(tmp) / "bench.db", *more, model=serve)
            )
            process = stack.enter_context(tether)
            url, pid = process.base_url, process.process.pid if process.process else None
        assert url is not None
        yield Servers(url, pid, peer)


def _target(base_url: str | None, max_output_tokens: int) -> Target:
    assert base_url is not None
    models = httpx.get(base_url + "/models", timeout=30).json()["data"]
    return Target(base_url=base_url, model=models[0]["id"], max_output_tokens=max_output_tokens)


def _failures(failures: dict[str, int]) -> str:
    """`3 (upgrade refused 503: 2, connect: TimeoutError: 1)`, or 0."""
    if not failures:
        return "0"
    kinds = ", ".join(f"{kind}: {count:,}" for kind, count in sorted(failures.items()))
    return f"{sum(failures.values()):,} ({kinds})"


def _machine() -> str:
    cores = len(os.sched_getaffinity(0))
    return f"{platform.machine()}, {cores} cores, Python {platform.python_version()}"


def _command() -> str:
    return "tether " + shlex.join(sys.argv[1:])


def _progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console)


def _write(out: Path, name: str, table: str, json_rows: object, json_out: bool) -> None:
    """The rows as JSON, the table with its command and machine as markdown; `--json` prints
    the rows on stdout too (the table and progress go to stderr)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_bytes(orjson.dumps(json_rows, option=orjson.OPT_INDENT_2))
    (out / f"{name}.md").write_text(f"Command: `{_command()}`\n\nMachine: {_machine()}\n\n{table}")
    console.print(table)
    console.print(f"Wrote {out / name}.json, .md and .png")
    if json_out:
        sys.stdout.buffer.write(orjson.dumps(json_rows) + b"\n")


@bench.command()
def overhead(
    url: Annotated[str | None, typer.Option(help=URL_HELP)] = None,
    modes: Annotated[str, typer.Option(help="Comma-separated modes.")] = "ws,http-stateless,http-chained",
    turns: Annotated[int, typer.Option(help="Turns, i.e. the longest history measured.")] = 100,
    repeats: Annotated[int, typer.Option(help="Runs; percentiles are over all of them.")] = 3,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Another Tether's base URL (e.g. an earlier commit, on the scripted model): every "
            "mode runs against both, side by side in each repeat, and the table compares them."
        ),
    ] = None,
    out: Annotated[Path, OUT] = DEFAULT_OUT,
    name: Annotated[str, typer.Option(help="File name stem.")] = "overhead",
    json_out: Annotated[bool, JSON_OUT] = False,
) -> None:
    """Server cost of a continuation turn as the history grows (scripted model, zero latency)."""
    chosen = tuple(modes.split(","))
    labelled = tuple(m for mode in chosen for m in (f"{mode}@{BASELINE}", mode)) if baseline else chosen
    plan = runner.Plan(labelled, (1,), turns, repeats)
    with _servers(url, None if url else "scripted") as running, _progress() as progress:
        target = _target(running.tether_url, max_output_tokens=1)
        targets = dict.fromkeys(chosen, target)
        if baseline is not None:
            targets |= dict.fromkeys((f"{mode}@{BASELINE}" for mode in chosen), _target(baseline, 1))
        rows, failures = asyncio.run(runner.run(plan, targets, progress))
    report.overhead_chart(rows, out / f"{name}.png", f"Continuation turn time, scripted model ({_machine()})")
    table = report.overhead_markdown(rows) + "".join(f"\nFailed: {f}\n" for f in failures)
    if baseline is not None:
        table += "\n" + report.comparison_markdown(rows, BASELINE)
    _write(out, name, table, [row.to_json() for row in rows], json_out)


@bench.command()
def stores(
    turns: Annotated[int, typer.Option(help="Turns of each chain, i.e. the longest history.")] = 200,
    repeats: Annotated[int, typer.Option(help="Runs; percentiles are over all of them.")] = 3,
    out: Annotated[Path, OUT] = DEFAULT_OUT,
    name: Annotated[str, typer.Option(help="File name stem.")] = "stores",
    json_out: Annotated[bool, JSON_OUT] = False,
) -> None:
    """`store: true` chains over HTTP on PostgreSQL against SQLite, side by side (scripted model):
    it starts a PostgreSQL and two Tethers, one on each store."""
    plan = runner.Plan(("http-chained@SQLite", "http-chained"), (1,), turns, repeats)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        console.print("Starting PostgreSQL, then tether serve on it and on a SQLite file …")
        database = stack.enter_context(postgres_server()).new_database()
        on_postgres = stack.enter_context(servers.tether(Path(tmp) / "pg.db", store=database))
        on_sqlite = stack.enter_context(servers.tether(Path(tmp) / "sqlite.db"))
        targets = {
            "http-chained": _target(on_postgres.base_url, 1),
            "http-chained@SQLite": _target(on_sqlite.base_url, 1),
        }
        before = asyncio.run(store_costs.footprint(database))
        with _progress() as progress:
            rows, failures = asyncio.run(runner.run(plan, targets, progress))
        after = asyncio.run(store_costs.footprint(database))
        wal = after.wal_position - before.wal_position
        console.print("Timing signals between two processes' stores …")
        latency = asyncio.run(store_costs.signal_latency(database))
    title = "store: true chains over HTTP: PostgreSQL, SQLite dashed (scripted model)"
    report.overhead_chart(rows, out / f"{name}.png", title)
    table = report.comparison_markdown(rows, "SQLite", subject="PostgreSQL")
    table += "".join(f"\nFailed: {f}\n" for f in failures)
    stored = after.responses - before.responses
    p99 = store_costs.percentile(latency, 0.99)
    table += (
        f"\nPostgreSQL per stored turn ({stored:,} turns): {wal / stored / 1024:.1f} KB of WAL written, "
        f"{(after.database_bytes - before.database_bytes) / stored / 1024:.1f} KB of database growth. "
        f"A signal between two processes (NOTIFY to LISTEN, {len(latency)} one at a time): median "
        f"{statistics.median(latency) * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms.\n"
    )
    _write(out, name, table, [row.to_json() for row in rows], json_out)


@bench.command(name="warm-up")
def warm_up(
    url: Annotated[
        str | None, typer.Option(help="Tether's base URL; without it, --serve starts one.")
    ] = None,
    serve: Annotated[str, typer.Option(help="The --model of the Tether it starts.")] = "local",
    prefix_tokens: Annotated[int, typer.Option(help="Size of the warm-up's prefix (Codex: ~5,700).")] = 5700,
    repeats: Annotated[int, typer.Option(help="Runs, each on a socket and a prefix of its own.")] = 3,
    max_output_tokens: Annotated[int, typer.Option(help="Output cap of the turn after the warm-up.")] = 8,
    out: Annotated[Path, OUT] = DEFAULT_OUT,
    name: Annotated[str, typer.Option(help="File name stem.")] = "warm-up",
    json_out: Annotated[bool, JSON_OUT] = False,
) -> None:
    """A Codex-sized warm-up: how soon it is answered, and the next turn's time to first token."""
    runs: list[warm_up_run.WarmUpRun] = []
    with _servers(url, None if url else serve) as running, _progress() as progress:
        target = _target(running.tether_url, max_output_tokens)
        task = progress.add_task("warm-up and turn", total=repeats)
        for session in range(repeats):
            runs.append(asyncio.run(warm_up_run.run(target, prefix_tokens, session)))
            progress.advance(task)
    answered = statistics.median(r.answered_s for r in runs)
    first_token = report.median(r.next_first_token_s for r in runs)
    lines = [
        "| warm-up input tokens | warm-up answered (s) | next turn: time to first token (s) "
        "| warm-up + next turn (s) | next turn: cached tokens |",
        "|---|---|---|---|---|",
        f"| {statistics.median(r.warm_up_input_tokens for r in runs):,.0f} | {answered:.3f} "
        f"| {first_token or 0:.2f} | {statistics.median(r.total_s for r in runs):.2f} "
        f"| {statistics.median(r.next_cached_tokens for r in runs):,.0f} |",
    ]
    numbers = list(range(1, repeats + 1))
    report.line_chart(
        {"warm-up answered": (numbers, [r.answered_s for r in runs]),
         "next turn's first token": (numbers, [r.next_first_token_s or 0 for r in runs]),
         "warm-up + next turn": (numbers, [r.total_s for r in runs])},
        out / f"{name}.png", f"Warm-up of {prefix_tokens:,} tokens ({_machine()})", "run", "seconds",
    )  # fmt: skip
    _write(out, name, "\n".join(lines) + "\n", [run.__dict__ for run in runs], json_out)


@bench.command()
def steer(
    url: Annotated[
        str | None, typer.Option(help="Tether's base URL; without it, --serve starts one.")
    ] = None,
    serve: Annotated[str, typer.Option(help="The --model of the Tether it starts.")] = "local",
    serve_args: Annotated[
        str, typer.Option(help="More options for the Tether it starts, e.g. '--scripted-decode-us 10000'.")
    ] = "",
    repeats: Annotated[int, typer.Option(help="Runs, each steering one answer and waiting out another.")] = 5,
    after_tokens: Annotated[int, typer.Option(help="Output tokens of the answer before the correction.")] = 8,
    max_output_tokens: Annotated[int, typer.Option(help="Output cap of every response.")] = 128,
    out: Annotated[Path, OUT] = DEFAULT_OUT,
    name: Annotated[str, typer.Option(help="File name stem.")] = "steer",
    json_out: Annotated[bool, JSON_OUT] = False,
) -> None:
    """Steering: from `response.steer` to its successor's first token, against waiting for the
    answer to end and sending the correction as the next turn."""
    runs: list[steer_run.SteerRun] = []
    serving = _servers(url, None if url else serve, serve_args=shlex.split(serve_args))
    with serving as running, _progress() as progress:
        target = _target(running.tether_url, max_output_tokens)
        task = progress.add_task("steered and waited-out answers", total=repeats)
        for session in range(repeats):
            runs.append(asyncio.run(steer_run.run(target, after_tokens, session)))
            progress.advance(task)

    def med(field: str) -> float:
        return float(statistics.median(getattr(run, field) for run in runs))

    steered, waited = med("steered_first_token_s"), med("waited_first_token_s")
    prefilled = med("successor_input_tokens") - med("successor_cached_tokens")
    lines = [
        "| model | steered after | steer → accepted (s) | steer → stopped (s) | steer → successor's first "
        "token (s) | successor: prefilled of input tokens | waiting instead: correction → first token (s) "
        "| waited / steered |",
        "|---|---|---|---|---|---|---|---|",
        f"| {target.model} | {after_tokens} tokens | {med('accepted_s'):.3f} | {med('stopped_s'):.3f} "
        f"| {steered:.3f} | {prefilled:,.0f} of {med('successor_input_tokens'):,.0f} | {waited:.3f} "
        f"| {waited / steered:.1f}x |",
    ]
    numbers = list(range(1, repeats + 1))
    report.line_chart(
        {"steered: steer → successor's first token": (numbers, [r.steered_first_token_s for r in runs]),
         "waited out: correction → its first token": (numbers, [r.waited_first_token_s for r in runs])},
        out / f"{name}.png", f"Steering {target.model} after {after_tokens} tokens ({_machine()})", "run",
        "seconds",
    )  # fmt: skip
    _write(out, name, "\n".join(lines) + "\n", [run.__dict__ for run in runs], json_out)


@bench.command()
def weights(
    model: Annotated[Path | None, typer.Option(help="A GGUF file; by default the shipped SmolLM2.")] = None,
    threads: Annotated[int, typer.Option(help="CPU threads, as the engine's --n-threads.")] = 2,
    rounds: Annotated[int, typer.Option(help="Speed rounds per layout, interleaved; medians.")] = 5,
    out: Annotated[Path, OUT] = DEFAULT_OUT,
    name: Annotated[str, typer.Option(help="File name stem.")] = "weights",
    json_out: Annotated[bool, JSON_OUT] = False,
) -> None:
    """The model file as shipped against the same weights as Q8_0: perplexity and speed."""
    # Late: the other benchmarks run without the local engine installed.
    from tether.backends.local import layout
    from tether.backends.local.model_file import locate
    from tether.bench import weights as weights_run

    source = locate(model).path
    files = {f"{layout.shipped_name(source)} (as shipped)": source, "Q8_0": layout.as_q8_0(source)}
    with _progress() as progress:
        task = progress.add_task("perplexity, then speed rounds", total=len(files) * rounds)
        results = weights_run.measure(files, threads, rounds, lambda: progress.advance(task))
    weights_run.chart(results, out / f"{name}.png", f"{source.name}: two layouts ({_machine()})")
    table = weights_run.markdown(results, threads)
    _write(out, name, table, [result.__dict__ for result in results], json_out)


REPEATS = typer.Option(help="Runs of each size; the table shows their median.")


@bench.command()
def throughput(
    url: Annotated[str | None, typer.Option(help=URL_HELP)] = None,
    connections: Annotated[str, typer.Option(help="Comma-separated connection counts.")] = "1,2,4,8,16,32,64",
    seconds: Annotated[float, typer.Option(help="How long each count runs.")] = 5.0,
    max_output_tokens: Annotated[int, typer.Option(help="Tokens per response.")] = 16,
    workers: Annotated[
        str,
        typer.Option(
            help="Comma-separated `--workers` of the Tethers it starts on the scripted model, measured "
            "side by side (more than 1 starts a PostgreSQL for all of them)."
        ),
    ] = "1",
    upstream_replicas: Annotated[
        str | None,
        typer.Option(
            help="Also comma-separated numbers of Tether replicas in upstream mode, each set behind "
            "nginx, on one PostgreSQL, in front of a stand-in engine that answers at once."
        ),
    ] = None,
    traced: Annotated[
        str,
        typer.Option(
            help="Also each setup traced, at each of these sampled shares of responses (e.g. "
            "`1,0.1`), its spans sent by OTLP to a receiver the benchmark runs."
        ),
    ] = "",
    repeats: Annotated[int, REPEATS] = 3,
    out: Annotated[Path, OUT] = DEFAULT_OUT,
    name: Annotated[str, typer.Option(help="File name stem.")] = "throughput",
    json_out: Annotated[bool, JSON_OUT] = False,
) -> None:
    """Responses and streamed events per second over 1…64 WebSocket connections."""
    counts = [int(n) for n in connections.split(",")]
    sizes = [int(n) for n in workers.split(",")]
    replicas = [int(n) for n in upstream_replicas.split(",")] if upstream_replicas else []
    shares = [float(n) for n in traced.split(",")] if traced else []
    with (
        OtlpSink() as sink,
        _throughput_setups(url, sizes, replicas, sink, shares) as setups,
        _progress() as progress,
    ):
        results: dict[tuple[str, int], list[load.Throughput]] = {(s, c): [] for s in setups for c in counts}
        targets = {label: _target(base_url, max_output_tokens) for label, (base_url, _) in setups.items()}
        task = progress.add_task("throughput", total=len(results) * repeats)
        for repeat in range(repeats):
            for count in counts:
                for label, (_, pids) in setups.items():  # side by side: each count on every setup
                    progress.update(task, description=f"{count} connection(s), {label}, run {repeat + 1}")
                    run = load.throughput(targets[label], count, seconds, pids)
                    results[label, count].append(asyncio.run(run))
                    progress.advance(task)
    median = {key: _throughput_medians(runs) for key, runs in results.items()}
    header = "| setup | connections | responses/s | events/s | refused/s | responses per server CPU-second |"
    lines = [header, "|---|---|---|---|---|---|"]
    lines += [f"| {s} | {c} | {median[s, c][0]:,.0f} | {median[s, c][1]:,.0f} | {median[s, c][2]:,.0f} | "
              f"{_per_cpu(median[s, c][3])} |" for s in setups for c in counts]  # fmt: skip
    series = {label: (counts, [median[label, c][0] for c in counts]) for label in setups}
    title = f"Throughput ({_machine()})"
    report.line_chart(series, out / f"{name}.png", title, "concurrent WebSocket connections",
                      "responses per second (median)", log_x=True)  # fmt: skip
    rows = [
        {**r.__dict__, "setup": label, "repeat": i}
        for (label, _), runs in results.items()
        for i, r in enumerate(runs)
    ]
    if shares:
        lines.append(f"\nSpans received from the traced setups: {sink.exports:,} OTLP exports, "
                     f"{sink.bytes / 1e6:,.1f} MB.")  # fmt: skip
    _write(out, name, "\n".join(lines) + "\n", rows, json_out)


def _throughput_medians(runs: list[load.Throughput]) -> tuple[float, float, float, float | None]:
    """Responses, events and refusals per second, and responses per server CPU-second, each the
    median of the runs."""
    return (
        statistics.median(r.responses_per_s for r in runs),
        statistics.median(r.events_per_s for r in runs),
        statistics.median(r.refused / r.seconds for r in runs),
        report.median(r.responses_per_cpu_s for r in runs),
    )


def _per_cpu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


Setups = dict[str, tuple[str, list[int]]]  # label → (base URL, the pids of its server processes)


@contextlib.contextmanager
def _throughput_setups(
    url: str | None, sizes: list[int], replicas: list[int], sink: OtlpSink, shares: list[float]
) -> Iterator[Setups]:
    """What `throughput` measures, by label: `url` itself, or a Tether on the scripted model for
    each `--workers` size, and a set of upstream replicas behind nginx for each number of them
    (each also traced into `sink`, at each sampled share of `shares`); all on one new PostgreSQL
    when any has more than one process."""
    if url is not None:
        yield {"given URL": (url, [])}
        return
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        database = None
        if max(sizes) > 1 or replicas:
            console.print("Starting PostgreSQL …")
            database = stack.enter_context(postgres_server()).new_database()
        setups: Setups = {}
        variants = list(_traced_variants(sink, shares).items())
        for size, (v, (suffix, env)) in itertools.product(sizes, enumerate(variants)):
            label = f"{size} worker{'s' * (size > 1)}{suffix}"
            console.print(f"Starting tether serve --model scripted --workers {size} ({label}) …")
            db = folder / f"w{size}-{v}.db"
            process = stack.enter_context(servers.tether(db, "--workers", str(size), store=database, env=env))
            setups[label] = (process.base_url, _pids(process))
        if replicas:
            console.print("Starting the stand-in engine (python -m tether.bench.engine) …")
            engine = stack.enter_context(servers.bench_engine(folder / "engine.log")).base_url
        for count, (v, (suffix, env)) in itertools.product(replicas, enumerate(variants)):
            label = f"upstream, {count} replica{'s' * (count > 1)}{suffix}"
            console.print(f"Starting {count} x tether serve --upstream, and nginx in front ({label}) …")
            name = f"{count}-{v}"
            replica = functools.partial(servers.tether, model=None, store=database, env=env)
            started = [
                stack.enter_context(replica(folder / f"u{name}-{n}.db", "--upstream", engine))
                for n in range(count)
            ]
            balancer = servers.nginx(NGINX_TEMPLATE, [s.port for s in started], folder / f"nginx{name}")
            front = stack.enter_context(balancer)
            setups[label] = (front.base_url, [pid for s in started for pid in _pids(s)])
        yield setups


def _traced_variants(sink: OtlpSink, shares: list[float]) -> dict[str, dict[str, str]]:
    """Each setup as it is (label suffix "") and traced at each sampled share: the environment
    each adds. Sampling is the standard variables' (a share of the responses' traces, whole)."""
    variants: dict[str, dict[str, str]] = {"": {}}
    for share in shares:
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint}
        if share < 1:
            traced["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
            traced["OTEL_TRACES_SAMPLER_ARG"] = f"{share:g}"
        variants[", traced" + ("" if share == 1 else f" {share:.0%}")] = traced
    return variants


def _pids(process: servers.ServerProcess) -> list[int]:
    return [] if process.process is None else [process.process.pid]


async def _restarts(replicas: list[servers.ServerProcess], every_s: float, rng: random.Random) -> None:
    """Restart a replica at random every `every_s`: SIGTERM (it drains) and SIGKILL in turn. A
    restart under way when the soak ends is finished first, so the checks find every replica up."""
    for count in itertools.count():
        await asyncio.sleep(every_s)
        replica = rng.choice(replicas)
        restart = asyncio.ensure_future(asyncio.to_thread(_restart, replica, kill=count % 2 == 1))
        try:
            await asyncio.shield(restart)
        except asyncio.CancelledError:
            await restart
            raise


def _restart(replica: servers.ServerProcess, kill: bool) -> None:
    if kill:
        replica.kill()
    else:
        replica.stop()
    replica.start()


@bench.command()
def connections(
    url: Annotated[str | None, typer.Option(help=URL_HELP)] = None,
    count: Annotated[str, typer.Option(help="Comma-separated numbers of idle connections.")] = "1000,10000",
    repeats: Annotated[int, REPEATS] = 3,
    out: Annotated[Path, OUT] = DEFAULT_OUT,
    name: Annotated[str, typer.Option(help="File name stem.")] = "connections",
    json_out: Annotated[bool, JSON_OUT] = False,
) -> None:
    """Hold N idle WebSocket connections: server memory per connection and time to open them.

    Each run gets a fresh server, so memory freed by an earlier run cannot hide the cost."""
    counts = [int(n) for n in count.split(",")]
    load.raise_fd_limit(max(counts) + 1024)  # before the server starts: it inherits the limit
    results: dict[int, list[load.IdleConnections]] = {n: [] for n in counts}
    for repeat in range(repeats):
        for n in counts:
            with _servers(url, None if url else "scripted") as running:
                console.print(f"Opening {n} connections (run {repeat + 1}) …")
                target = _target(running.tether_url, 1)
                results[n].append(asyncio.run(load.idle_connections(target, n, running.tether_pid)))
    lines = ["| connections | time to open (s) | server memory per connection (KB) |", "|---|---|---|"]
    kilobytes: dict[int, float | None] = {}
    for n, runs in results.items():
        kilobytes[n] = report.median((r.bytes_per_connection or None) for r in runs)
        per = "n/a" if kilobytes[n] is None else f"{(kilobytes[n] or 0) / 1024:.1f}"
        lines.append(f"| {n:,} | {statistics.median(r.open_seconds for r in runs):.1f} | {per} |")
    report.line_chart({"KB per connection": (counts, [(kilobytes[n] or 0) / 1024 for n in counts])},
                      out / f"{name}.png", f"Idle WebSocket connections ({_machine()})", "connections held",
                      "server memory per connection (KB, median)", log_x=True)  # fmt: skip
    rows = [{**r.__dict__, "repeat": i} for runs in results.values() for i, r in enumerate(runs)]
    _write(out, name, "\n".join(lines) + "\n", rows, json_out)


@bench.command()
def soak(
    url: Annotated[str | None, typer.Option(help=URL_HELP)] = None,
    connections: Annotated[int, typer.Option(help="Agents, each on its own WebSocket at a time.")] = 20,
    turns: Annotated[int, typer.Option(help="Turns per agent (a turn runs on 1 to --lanes lanes).")] = 50,
    lanes: Annotated[int, typer.Option(help="Lanes an agent may use at once (default lane included).")] = 3,
    drop_share: Annotated[
        float, typer.Option(help="Share of turns that drop the connection mid-stream.")
    ] = 0.05,
    decode_us: Annotated[
        float, typer.Option(help="Scripted model's µs per token, when it starts the server.")
    ] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 1,
    replicas: Annotated[
        int, typer.Option(help="Tethers it starts on one PostgreSQL (more than 1), each connection to one.")
    ] = 1,
    restart_every_s: Annotated[
        float | None,
        typer.Option(help="With replicas: restart one of them this often, by SIGTERM or SIGKILL in turn."),
    ] = None,
    out: Annotated[Path, OUT] = DEFAULT_OUT,
    name: Annotated[str, typer.Option(help="File name stem.")] = "soak",
    json_out: Annotated[bool, JSON_OUT] = False,
) -> None:
    """Agents with lanes, drops and reconnects; fails (exit 1) on any broken promise or leak."""
    plan = soak_run.SoakPlan(
        connections=connections, turns=turns, lanes=lanes, drop_share=drop_share, seed=seed
    )
    with contextlib.ExitStack() as stack:
        started: list[servers.ServerProcess] = []
        if url is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            store = None
            if replicas > 1:
                console.print("Starting PostgreSQL …")
                store = stack.enter_context(postgres_server()).new_database()
            console.print(
                f"Starting {replicas} x tether serve --model scripted --scripted-decode-us {decode_us:g} …"
            )
            flags = ("--scripted-decode-us", str(decode_us), "--orphan-after-s", str(SOAK_ORPHAN_AFTER_S))
            for n in range(replicas):
                started.append(stack.enter_context(servers.tether(tmp / f"soak{n}.db", *flags, store=store)))
        urls = [url] if url is not None else [server.base_url for server in started]
        chaos = None
        if restart_every_s is not None and started:
            chaos = functools.partial(_restarts, started, restart_every_s, random.Random(seed))
        progress = stack.enter_context(_progress())
        task = progress.add_task("soak", total=connections * turns)
        result = asyncio.run(soak_run.run(urls, plan, on_turn=lambda: progress.advance(task), chaos=chaos))
    mib = 1024 * 1024
    lines = [
        "| agents x turns | creates | terminal events | error events | drops | stored checked (orphans) "
        "| seconds | RSS before → after (MiB) | tasks before → after | client failures | violations |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {connections} x {turns} | {result.creates:,} | {result.terminals:,} | {result.errors:,} "
        f"| {result.drops:,} | {result.stored_checked:,} ({result.orphans:,}) | {result.seconds:.1f} "
        f"| {result.before['rss'] / mib:.1f} → {result.after['rss'] / mib:.1f} "
        f"| {result.before['tasks']:g} → {result.after['tasks']:g} | {_failures(result.failures)} "
        f"| {len(result.violations)} |",
    ]
    samples = result.samples
    report.line_chart(
        {"server RSS (MiB)": ([s.seconds for s in samples], [s.rss_bytes / mib for s in samples]),
         "asyncio tasks": ([s.seconds for s in samples], [s.tasks for s in samples])},
        out / f"{name}.png", f"Soak: {connections} agents x {turns} turns ({_machine()})",
        "seconds", "MiB / tasks",
    )  # fmt: skip
    table = "\n".join(lines) + "\n" + "".join(f"\nViolation: {v}\n" for v in result.violations[:50])
    _write(out, name, table, result.to_json(), json_out)
    if result.violations:
        raise typer.Exit(1)
