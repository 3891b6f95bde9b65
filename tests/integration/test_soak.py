"""The short soak (the long one is `tether bench soak`, results in docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.server_process import TetherServer
from tether.bench.soak import SoakPlan, SoakResult, run


def soak(tmp_path: Path, plan: SoakPlan, *flags: str) -> SoakResult:
    """`plan` against a fresh server started with `flags`."""
    server = TetherServer(tmp_path / "soak.db", *flags).start()
    try:
        return asyncio.run(run([server.base_url], plan))
    finally:
        server.stop()


def test_a_short_soak_keeps_every_promise(tmp_path: Path) -> None:
    result = soak(
        tmp_path, SoakPlan(connections=12, turns=25, drop_share=0.1), "--scripted-decode-us", "2000"
    )
    assert result.violations == []
    assert result.drops > 0 and result.stored_checked > 0 and result.creates > 12 * 25
    assert result.after["running"] == result.after["connections"] == 0
    assert result.after["tasks"] <= result.before["tasks"]


def test_a_soak_counts_what_a_full_server_refuses_and_goes_on(tmp_path: Path) -> None:
    """One connection at a time: the other agents' upgrades are refused (503, `retry-after`),
    counted, and retried as an SDK would; every promise still holds, and no traceback."""
    result = soak(tmp_path, SoakPlan(connections=3, turns=4, drop_share=0), "--ws-max-connections", "1")
    assert result.violations == []
    assert result.failures.get("upgrade refused 503", 0) > 0
    assert set(result.failures) == {"upgrade refused 503"}
    assert result.terminals + result.errors == result.creates >= 3 * 4


def test_an_overloaded_server_refuses_new_work_and_keeps_every_promise(tmp_path: Path) -> None:
    """Far more agents than the loop keeps up with (a low `--max-loop-lag-ms`): creates and
    upgrades are refused with 503 and `retry-after` while the loop runs late, the agents wait and
    go on, and everything admitted still ends as promised."""
    result = soak(tmp_path, SoakPlan(connections=100, turns=5, drop_share=0), "--max-loop-lag-ms", "20")
    assert result.violations == []
    refused = result.failures.get("create refused 503", 0) + result.failures.get("upgrade refused 503", 0)
    assert refused > 0 and result.terminals > 0
    assert set(result.failures) <= {"create refused 503", "upgrade refused 503"}
    assert result.terminals + result.errors == result.creates
