"""Runs the rollout: every mode at every concurrency, repeated, with a progress bar."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.progress import Progress

from tether.bench.agents import Target, TurnResult, run_agent
from tether.bench.workload import Rollout


@dataclass(frozen=True)
class Row:
    mode: str
    agents: int  # how many ran at once
    repeat: int
    agent: int
    result: TurnResult
    run_s: float | None = None  # the whole run's wall clock, every agent's turns
    kv_copied_bytes: float | None = None  # KV the server copied in and out during the run

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "agents": self.agents, "repeat": self.repeat, "agent": self.agent,
                **asdict(self.result), "prefilled_tokens": self.result.prefilled_tokens,
                "run_s": self.run_s, "kv_copied_bytes": self.kv_copied_bytes}  # fmt: skip


@dataclass(frozen=True)
class Plan:
    # A mode may carry a label after '@' ("ws@baseline"): the same client, another target.
    modes: tuple[str, ...]
    concurrency: tuple[int, ...]
    turns: int
    repeats: int

    @property
    def total_turns(self) -> int:
        return len(self.modes) * sum(self.concurrency) * self.turns * self.repeats


def client_mode(mode: str) -> str:
    """The client's mode of a labelled one: "ws@baseline" → "ws"."""
    return mode.partition("@")[0]


async def run(plan: Plan, targets: dict[str, Target], progress: Progress) -> tuple[list[Row], list[str]]:
    """`targets` maps each mode to the server it runs against (chat goes to the peer).

    An agent that fails is reported and left out; the others' turns still count."""
    task = progress.add_task("rollout", total=plan.total_turns)
    rows: list[Row] = []
    failures: list[str] = []
    for repeat in range(plan.repeats):
        for agents in plan.concurrency:
            conversations: dict[str, int] = {}  # runs so far on each server at this concurrency
            for mode in plan.modes:
                # Modes on different servers get the same conversation, side by side; on one server
                # each its own, or a server reusing by content would find the previous mode's turns.
                server = targets[mode].base_url
                conversations[server] = conversations.get(server, 0) + 1
                run = f"{agents} agent(s), run {repeat + 1}, conversation {conversations[server]}"
                progress.update(task, description=f"{mode}, {agents} agent(s), run {repeat + 1}")
                rollouts = [Rollout(agent=i, turns=plan.turns, run=run) for i in range(agents)]
                copied_before, started = await kv_copied(targets[mode]), time.perf_counter()
                results = await asyncio.gather(
                    *(run_agent(client_mode(mode), targets[mode], r) for r in rollouts),
                    return_exceptions=True,
                )
                run_s, copied_after = time.perf_counter() - started, await kv_copied(targets[mode])
                copied = (
                    None if copied_before is None or copied_after is None else copied_after - copied_before
                )
                for rollout, turns in zip(rollouts, results, strict=True):
                    if isinstance(turns, BaseException):
                        failures.append(f"{mode}, {agents} agent(s), agent {rollout.agent}: {turns!r}")
                        continue
                    rows += [Row(mode, agents, repeat, rollout.agent, t, run_s, copied) for t in turns]
                progress.advance(task, agents * plan.turns)
    return rows, failures


async def kv_copied(target: Target) -> float | None:
    """Bytes of KV a Tether server has copied to and from snapshots so far; None for a server
    that does not say (a peer, an upstream-backed Tether has no KV of its own to copy)."""
    url = target.base_url.removesuffix("/v1") + "/metrics"
    try:
        async with httpx.AsyncClient(timeout=10, headers=target.headers) as client:
            reply = await client.get(url)
    except httpx.HTTPError:
        return None
    if reply.status_code != 200:
        return None
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            if sample.name == "tether_kv_snapshot_copied_bytes_total":
                return sample.value
    return None
