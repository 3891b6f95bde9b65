"""The short soak (the long one is `tether bench soak`, results in docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.server_process import TetherServer
from tether.bench.soak import SoakPlan, run


def test_a_short_soak_keeps_every_promise(tmp_path: Path) -> None:
    server = TetherServer(tmp_path / "soak.db", "--scripted-decode-us", "2000").start()
    try:
        result = asyncio.run(run(server.base_url, SoakPlan(connections=12, turns=25, drop_share=0.1)))
    finally:
        server.stop()
    assert result.violations == []
    assert result.drops > 0 and result.stored_checked > 0 and result.creates > 12 * 25
    assert result.after["running"] == result.after["connections"] == 0
    assert result.after["tasks"] <= result.before["tasks"]
