"""Medians of a rollout run: a markdown table, a PNG chart and the raw rows as JSON."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import orjson

from tether.bench.agents import TurnResult
from tether.bench.runner import Row

MODE_COLORS = {
    "ws": "tab:green",
    "ws-reconnect": "tab:olive",
    "http-stateless": "tab:orange",
    "http-chained": "tab:purple",
    "chat": "tab:blue",
}


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def by_turn(rows: list[Row], metric: str) -> dict[tuple[str, int], dict[int, float | None]]:
    """(mode, agents) -> turn -> median of `metric` across agents and repeats."""
    groups: dict[tuple[str, int, int], list[float | None]] = defaultdict(list)
    for row in rows:
        value = getattr(row.result, metric)
        groups[(row.mode, row.agents, row.result.turn)].append(value)
    table: dict[tuple[str, int], dict[int, float | None]] = defaultdict(dict)
    for (mode, agents, turn), values in sorted(groups.items()):
        table[(mode, agents)][turn] = median(values)
    return table


def markdown(rows: list[Row]) -> str:
    first_token = by_turn(rows, "first_token_s")
    prefilled = by_turn(rows, "prefilled_tokens")
    seconds = by_turn(rows, "seconds")
    lines = [
        "| mode | agents | TTFT turn 2 (s) | TTFT last turn (s) | last / turn 2 "
        "| prefilled tokens, last turn | mean turn time (s) | one agent's rollout (s) | run, wall clock (s) "
        "| KV copied per turn (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(first_token):
        mode, agents = key
        turns = first_token[key]
        last = max(turns)
        second, final = turns.get(2), turns.get(last)
        ratio = f"{final / second:.2f}x" if second and final else "n/a"
        mean_turn = statistics.mean(v for v in seconds[key].values() if v is not None)
        runs = _runs(rows, mode, agents)
        rollout = median(sum(r.result.seconds for r in agent_rows) for agent_rows in runs.values())
        wall = median(agent_rows[0].run_s for agent_rows in runs.values())
        copied = median(
            agent_rows[0].kv_copied_bytes / (agents * len(agent_rows)) / 1e6
            for agent_rows in runs.values()
            if agent_rows[0].kv_copied_bytes is not None
        )
        lines.append(
            f"| {mode} | {agents} | {_num(second)} | {_num(final)} | {ratio} | "
            f"{_num(prefilled[key].get(last), 0)} | {mean_turn:.2f} | {_num(rollout, 1)} | {_num(wall, 1)} | "
            f"{_num(copied, 1)} |"
        )
    return "\n".join(lines) + "\n" + _reconnects(rows) + _misses(rows)


def _runs(rows: list[Row], mode: str, agents: int) -> dict[tuple[int, int], list[Row]]:
    """(repeat, agent) -> that agent's turns in that run."""
    runs: dict[tuple[int, int], list[Row]] = defaultdict(list)
    for row in rows:
        if row.mode == mode and row.agents == agents:
            runs[(row.repeat, row.agent)].append(row)
    return runs


def _reconnects(rows: list[Row]) -> str:
    """Time to first token of the turns that came on a new socket with the whole context, against
    the continuations on a socket already open (turn 1 left out: it has no parent)."""
    lines = []
    for agents in sorted({r.agents for r in rows if r.result.reconnected}):
        turns = [r.result for r in rows if r.agents == agents and r.mode.startswith("ws-reconnect")]
        fresh = median(t.first_token_s for t in turns if t.reconnected)
        kept = median(t.first_token_s for t in turns if not t.reconnected and t.turn > 1)
        if fresh is not None and kept:
            lines.append(
                f"\nws-reconnect, {agents} agent(s): time to first token {fresh:.2f} s on a new socket "
                f"against {kept:.2f} s on an open one (median; x{fresh / kept:.2f}).\n"
            )
    return "".join(lines)


def _misses(rows: list[Row]) -> str:
    """Turns after the first that missed the cache of the turn before, by mode and reason
    (`prompt_cache_diagnostics`); modes whose server says nothing are left out."""
    lines = []
    for mode in sorted({row.mode for row in rows}):
        said = [row.result.cache for row in rows if row.mode == mode and row.result.cache is not None]
        if not said:
            continue
        reasons = Counter(cache for cache in said if cache != "hit")
        named = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items())) or "none"
        lines.append(f"| {mode} | {len(said)} | {sum(reasons.values())} | {named} |")
    if not lines:
        return ""
    header = "\n| mode | turns compared with the one before | cache misses | by reason |\n|---|---|---|---|\n"
    return header + "\n".join(lines) + "\n"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def chart(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    first_token = by_turn(rows, "first_token_s")
    prefilled = by_turn(rows, "prefilled_tokens")
    concurrency = sorted({agents for _, agents in first_token})
    figure, axes = plt.subplots(2, len(concurrency), figsize=(6 * len(concurrency), 8), squeeze=False)
    for column, agents in enumerate(concurrency):
        for (mode, n), turns in sorted(first_token.items()):
            if n != agents:
                continue
            xs = sorted(turns)
            style = {"marker": "o", "markersize": 3, "label": mode, "color": MODE_COLORS.get(mode)}
            axes[0][column].plot(xs, [turns[x] for x in xs], **style)
            filled = prefilled[(mode, n)]
            if any(v is not None for v in filled.values()):
                axes[1][column].plot(xs, [filled.get(x) for x in xs], **style)
        axes[0][column].set_title(f"{agents} agent(s) at once: time to first token")
        axes[0][column].set_ylabel("seconds (median)")
        axes[1][column].set_title(f"{agents} agent(s) at once: tokens prefilled")
        axes[1][column].set_ylabel("tokens (median)")
        for axis in (axes[0][column], axes[1][column]):
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.set_xlabel("turn")
            axis.grid(alpha=0.3)
            axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def load_json(path: Path) -> list[Row]:
    rows = []
    for raw in orjson.loads(path.read_bytes()):
        fields = {name: raw[name] for name in TurnResult.__dataclass_fields__ if name in raw}
        run = (raw.get("run_s"), raw.get("kv_copied_bytes"))
        rows.append(Row(raw["mode"], raw["agents"], raw["repeat"], raw["agent"], TurnResult(**fields), *run))
    return rows


# --- overhead, throughput, connections ------------------------------------------------------------

HISTORY_BUCKETS = ((1, 10), (11, 25), (26, 50), (51, 100), (101, 200), (201, 400))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def overhead_markdown(rows: list[Row]) -> str:
    """Turn time (ms) by history length: p50 and p99 per mode, over every repeat."""
    modes = sorted({row.mode for row in rows})
    last_turn = max(row.result.turn for row in rows)
    buckets = [(lo, hi) for lo, hi in HISTORY_BUCKETS if lo <= last_turn]
    header = "| mode | " + " | ".join(f"turns {lo}-{min(hi, last_turn)} p50 / p99 (ms)" for lo, hi in buckets)
    lines = [header + " |", "|---" * (len(buckets) + 1) + "|"]
    for mode in modes:
        cells = []
        for lo, hi in buckets:
            times = [r.result.seconds * 1000 for r in rows if r.mode == mode and lo <= r.result.turn <= hi]
            cells.append(f"{percentile(times, 0.5):.2f} / {percentile(times, 0.99):.2f}")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_markdown(rows: list[Row], label: str, subject: str = "this server") -> str:
    """Each mode against its `mode@label` twin, run side by side: p50 turn time (ms) by history
    length, and the ratio `subject` / `label`."""
    modes = sorted({row.mode for row in rows if "@" not in row.mode})
    last_turn = max(row.result.turn for row in rows)
    buckets = [(1, last_turn), *((lo, hi) for lo, hi in HISTORY_BUCKETS if lo <= last_turn)]
    header = "| mode | " + " | ".join(f"turns {lo}-{min(hi, last_turn)}" for lo, hi in buckets)
    lines = [header + " |", "|---" * (len(buckets) + 1) + "|"]

    def p50(mode: str, lo: int, hi: int) -> float:
        return percentile(
            [r.result.seconds * 1000 for r in rows if r.mode == mode and lo <= r.result.turn <= hi], 0.5
        )

    for mode in modes:
        cells = []
        for lo, hi in buckets:
            this, base = p50(mode, lo, hi), p50(f"{mode}@{label}", lo, hi)
            cells.append(f"{base:.2f} → {this:.2f} (x{this / base:.2f})")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    return f"p50 turn time (ms), {label} → {subject} (ratio):\n\n" + "\n".join(lines) + "\n"


Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]  # label -> (xs, ys)


def line_chart(series: Series, path: Path, title: str, xlabel: str, ylabel: str, log_x: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for label, (xs, ys) in series.items():
        # A labelled twin ("ws@baseline") takes its mode's colour, dashed.
        mode, _, twin = label.partition("@")
        style = "--" if twin else "-"
        axis.plot(xs, ys, style, marker="o", markersize=3, label=label, color=MODE_COLORS.get(mode))
    if log_x:
        axis.set_xscale("log", base=2)
    axis.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def overhead_chart(rows: list[Row], path: Path, title: str) -> None:
    medians = by_turn(rows, "seconds")
    series = {mode: (sorted(turns), [1000 * (turns[t] or 0) for t in sorted(turns)])
              for (mode, _), turns in medians.items()}  # fmt: skip
    line_chart(series, path, title, "turn (history length)", "turn time, median (ms)")
