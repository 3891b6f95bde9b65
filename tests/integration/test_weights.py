"""The layout of the local model's weights: converted once, chosen once per machine, the same
quality either way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LOCAL
from tests.server_process import TetherServer
from tether.backends.local import layout
from tether.backends.local.model_file import locate

pytestmark = pytest.mark.local_model


def test_the_shipped_file_is_converted_and_timed_once_then_remembered(tmp_path: Path) -> None:
    source = locate(None).path
    chosen = layout.fastest(source, threads=2, cache=tmp_path)
    converted = layout.as_q8_0(source, tmp_path)
    assert layout.shipped_name(converted) == "file type 7"  # Q8_0
    assert chosen.path in (source, converted) and chosen.name in ("Q8_0", "Q4_1")
    assert "agent-turn step took" in chosen.reason
    (choices,) = tmp_path.glob("*.choice.json")
    timed = json.loads(choices.read_text())
    assert set(timed["2"]["seconds"]) == {"shipped", "Q8_0"}
    stamps = (converted.stat().st_mtime_ns, choices.stat().st_mtime_ns)
    assert layout.fastest(source, threads=2, cache=tmp_path) == chosen  # nothing converted or timed again
    assert (converted.stat().st_mtime_ns, choices.stat().st_mtime_ns) == stamps
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial file left


def test_a_file_that_is_not_a_low_bit_quant_is_loaded_as_it_is(tmp_path: Path) -> None:
    converted = layout.as_q8_0(locate(None).path, tmp_path)
    kept = layout.fastest(converted, threads=2, cache=tmp_path / "other")
    assert kept.path == converted and "loaded as it is" in kept.reason
    assert not (tmp_path / "other").exists()


def test_the_benchmark_shows_equal_quality_in_both_layouts(tmp_path: Path) -> None:
    command = ["bench", "weights", "--rounds", "1", "--out", str(tmp_path), "--json"]
    result = subprocess.run(
        [sys.executable, "-m", "tether", *command], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    shipped, q8 = json.loads(result.stdout)
    assert shipped["layout"] == "Q4_1 (as shipped)" and q8["layout"] == "Q8_0"
    assert (
        q8["file_mb"] > 1.4 * shipped["file_mb"]
    )  # 145 against 98 MB: 8 bits a weight, not 4 (and 1 of scale)
    # 8 bits hold what 4 carried: the perplexities agree within 1% (measured: 0.3%).
    assert abs(q8["perplexity"] / shipped["perplexity"] - 1) < 0.01
    assert 5 < shipped["perplexity"] < 100  # a model reading English, not noise
    assert (tmp_path / "weights.png").read_bytes()[:4] == b"\x89PNG"
    assert "| Q8_0 |" in (tmp_path / "weights.md").read_text()


def test_a_server_says_at_start_which_layout_it_runs(tmp_path: Path) -> None:
    command = ("--fastest-weights", "--log-level", "info")
    with TetherServer(tmp_path / "t.db", *command, model="local") as server:
        reply = server.client().responses.create(model=LOCAL, input="Hi", max_output_tokens=4)
        assert reply.status in ("completed", "incomplete")
    (line,) = [line for line in server.log_path.read_text().splitlines() if "weights: " in line]
    assert (
        "weights: Q8_0: an agent-turn step took" in line or "weights: Q4_1: an agent-turn step took" in line
    )
