"""`tether bench rollout` end to end on the scripted model: it starts its own server, runs every
mode at two concurrencies, and writes rows, a table and a chart."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path


def test_rollout_runs_every_mode_and_writes_its_outputs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tether", "bench", "rollout", "--serve", "scripted", "--turns", "6",
         "--agents", "1,2", "--modes", "ws,ws-reconnect,http-stateless,http-chained", "--out", str(tmp_path),
         "--name", "smoke", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 4 * (1 + 2) * 6  # modes x agents x turns
    assert json.loads((tmp_path / "smoke.json").read_text()) == rows
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "smoke.md").read_text()
    assert "| ws | 2 |" in table and "ws-reconnect, 2 agent(s): time to first token" in table
    # Incremental modes prefill only the new item; the stateless one re-sends everything.
    last = {(r["mode"], r["agents"]): r for r in rows if r["turn"] == 3}
    assert last[("ws", 1)]["prefilled_tokens"] < last[("http-stateless", 1)]["prefilled_tokens"]
    assert last[("ws", 1)]["bytes_sent"] < last[("http-stateless", 1)]["bytes_sent"]
    # The reconnecting agent opens a new socket after turn 5 and resends all it has.
    reconnecting = {r["turn"]: r for r in rows if r["mode"] == "ws-reconnect" and r["agents"] == 1}
    assert [t for t, r in sorted(reconnecting.items()) if r["reconnected"]] == [6]
    assert reconnecting[6]["bytes_sent"] > 2 * reconnecting[5]["bytes_sent"]
    # The scripted model keeps no KV: nothing to copy, and the server says so.
    assert {r["kv_copied_bytes"] for r in rows} == {0}
    assert all(r["run_s"] >= r["seconds"] for r in rows)
    # Each turn after the first was compared with the one before: every one a hit, even the
    # reconnect's (found by content).
    compared = [r for r in rows if r["turn"] > 1 or r["mode"].startswith("ws")]
    assert {r["cache"] for r in compared} == {"hit"}
    assert "| ws | 18 | 0 | none |" in table  # 1 + 2 agents, 6 turns each


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "tether", "bench", *args, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def test_overhead_measures_each_mode_by_history_length(tmp_path: Path) -> None:
    bench(tmp_path, "overhead", "--turns", "12", "--repeats", "1")
    table = (tmp_path / "overhead.md").read_text()
    assert "turns 1-10 p50 / p99 (ms)" in table and "turns 11-12" in table
    assert {row["mode"] for row in json.loads((tmp_path / "overhead.json").read_text())} == {
        "ws", "http-stateless", "http-chained",
    }  # fmt: skip
    assert (tmp_path / "overhead.png").exists()


def test_stores_compares_postgresql_with_sqlite_side_by_side(tmp_path: Path) -> None:
    bench(tmp_path, "stores", "--turns", "12", "--repeats", "1")
    table = (tmp_path / "stores.md").read_text()
    assert "p50 turn time (ms), SQLite → PostgreSQL (ratio)" in table and "| http-chained |" in table
    rows = json.loads((tmp_path / "stores.json").read_text())
    assert {row["mode"] for row in rows} == {"http-chained", "http-chained@SQLite"} and len(rows) == 24
    assert (tmp_path / "stores.png").exists()
    assert "PostgreSQL per stored turn (12 turns):" in table and "KB of WAL written" in table
    assert "A signal between two processes (NOTIFY to LISTEN, 200 one at a time): median" in table


def test_throughput_counts_responses_and_events_for_each_setup(tmp_path: Path) -> None:
    """One and two workers, and two upstream replicas behind nginx in front of the stand-in engine."""
    printed = bench(tmp_path, "throughput", "--connections", "1,2", "--seconds", "0.5", "--workers", "1,2",
                    "--upstream-replicas", "2", "--max-output-tokens", "4", "--repeats", "2",
                    "--json").stdout  # fmt: skip
    results = json.loads((tmp_path / "throughput.json").read_text())
    assert json.loads(printed) == results
    setups = ("1 worker", "2 workers", "upstream, 2 replicas")
    assert sorted((r["setup"], r["connections"], r["repeat"]) for r in results) == [
        (s, c, i) for s in setups for c in (1, 2) for i in (0, 1)
    ]
    # Every response is created, in_progress, 2 item + 2 part events, 4 deltas, 3 dones, completed.
    assert all(r["events"] == 12 * r["responses"] > 0 and r["refused"] == 0 for r in results)
    assert all(r["server_cpu_s"] > 0 for r in results)  # the supervisor's workers counted too


def test_throughput_traced_side_by_side(tmp_path: Path) -> None:
    """`--traced`: the same Tether with tracing on, whole and sampled, its spans sent to the
    benchmark's receiver."""
    bench(tmp_path, "throughput", "--connections", "1", "--seconds", "0.5", "--traced", "1,0.5",
          "--repeats", "1", "--max-output-tokens", "4")  # fmt: skip
    results = json.loads((tmp_path / "throughput.json").read_text())
    assert sorted(r["setup"] for r in results) == ["1 worker", "1 worker, traced", "1 worker, traced 50%"]
    assert all(r["responses"] > 0 for r in results)
    received = re.search(
        r"Spans received from the traced setups: ([\d,]+) OTLP exports",
        (tmp_path / "throughput.md").read_text(),
    )
    assert received is not None and int(received[1].replace(",", "")) > 0


def test_connections_reads_the_servers_memory(tmp_path: Path) -> None:
    bench(tmp_path, "connections", "--count", "50", "--repeats", "1")
    (result,) = json.loads((tmp_path / "connections.json").read_text())
    assert result["connections"] == 50
    assert result["server_rss_after"] > result["server_rss_before"] > 0


def test_results_go_to_bench_results_unless_told_otherwise(tmp_path: Path) -> None:
    """A quick run never overwrites the published results in docs/benchmarks."""
    result = subprocess.run(
        [sys.executable, "-m", "tether", "bench", "overhead", "--turns", "2", "--repeats", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "bench-results").iterdir()) == [
        "overhead.json", "overhead.md", "overhead.png",
    ]  # fmt: skip
    assert not (tmp_path / "docs").exists()


def test_without_the_bench_extra_it_says_how_to_install_it(tmp_path: Path) -> None:
    """matplotlib made unimportable, as on an install without `tether[bench]`: one line, no traceback."""
    hide_matplotlib = "import sys; sys.modules['matplotlib'] = None; from tether.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", hide_matplotlib, "bench", "overhead", "--turns", "2"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "pip install 'tether[bench]'" in result.stderr
    assert not (tmp_path / "bench-results").exists()


def test_warm_up_times_the_answer_and_the_next_turn(tmp_path: Path) -> None:
    bench(tmp_path, "warm-up", "--serve", "scripted", "--prefix-tokens", "300", "--repeats", "2")
    runs = json.loads((tmp_path / "warm-up.json").read_text())
    assert len(runs) == 2
    # The next turn continued the warm-up: all of the warm-up's context was cached for it.
    assert all(run["next_cached_tokens"] >= run["warm_up_input_tokens"] - 1 > 250 for run in runs)
    assert "| warm-up input tokens |" in (tmp_path / "warm-up.md").read_text()
    assert (tmp_path / "warm-up.png").read_bytes()[:4] == b"\x89PNG"


def test_steer_times_the_successor_against_waiting_the_answer_out(tmp_path: Path) -> None:
    bench(tmp_path, "steer", "--serve", "scripted", "--serve-args", "--scripted-decode-us 5000",
          "--repeats", "2", "--after-tokens", "4", "--max-output-tokens", "32")  # fmt: skip
    runs = json.loads((tmp_path / "steer.json").read_text())
    assert len(runs) == 2
    for run in runs:
        # Stopped within a token of the steer, its successor continuing all it had.
        assert 4 <= run["steered_output_tokens"] < 32 and run["successor_cached_tokens"] > 0
        assert run["waited_output_tokens"] == 32  # the other answer ran to its end
        assert run["accepted_s"] <= run["steered_first_token_s"]
    assert "| waited / steered |" in (tmp_path / "steer.md").read_text()
    assert (tmp_path / "steer.png").read_bytes()[:4] == b"\x89PNG"


def test_a_soak_across_two_replicas_restarted_under_it_keeps_every_promise(tmp_path: Path) -> None:
    """Two replicas on one PostgreSQL, one restarted every 2 s (SIGTERM, then SIGKILL, …): every
    create still gets its one end or error, every stored response ends (none stuck), and what an
    agent saw end is stored as it saw it; the command exits 1 on any violation."""
    # 8 ms a token: the soak lasts about 6 s, so that it spans a few restarts on a fast machine.
    bench(tmp_path, "soak", "--replicas", "2", "--restart-every-s", "2", "--connections", "12",
          "--turns", "40", "--drop-share", "0.05", "--decode-us", "8000")  # fmt: skip
    result = json.loads((tmp_path / "soak.json").read_text())
    assert result["violations"] == [] and result["stored_checked"] > 0
    closed = {kind for kind in result["failures"] if kind.startswith(("closed by the server", "connect"))}
    assert closed  # the restarts were felt: sockets closed under the agents, or refused to open
