"""Runs the rollout: every mode at every concurrency, repeated, with a progress bar."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

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

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "agents": self.agents, "repeat": self.repeat, "agent": self.agent,
                **asdict(self.result), "prefilled_tokens": self.result.prefilled_tokens}  # fmt: skip


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
            for mode in plan.modes:
                progress.update(task, description=f"{mode}, {agents} agent(s), run {repeat + 1}")
                rollouts = [Rollout(agent=i, turns=plan.turns) for i in range(agents)]
                results = await asyncio.gather(
                    *(run_agent(client_mode(mode), targets[mode], r) for r in rollouts),
                    return_exceptions=True,
                )
                for rollout, turns in zip(rollouts, results, strict=True):
                    if isinstance(turns, BaseException):
                        failures.append(f"{mode}, {agents} agent(s), agent {rollout.agent}: {turns!r}")
                        continue
                    rows += [Row(mode, agents, repeat, rollout.agent, t) for t in turns]
                progress.advance(task, agents * plan.turns)
    return rows, failures
