"""`tether bench rollout` end to end on the scripted model: it starts its own server, runs every
mode at two concurrencies, and writes rows, a table and a chart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_rollout_runs_every_mode_and_writes_its_outputs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tether", "bench", "rollout", "--serve", "scripted", "--turns", "3",
         "--agents", "1,2", "--modes", "ws,http-stateless,http-chained", "--out", str(tmp_path),
         "--name", "smoke", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 3 * (1 + 2) * 3  # modes x agents x turns
    assert json.loads((tmp_path / "smoke.json").read_text()) == rows
    assert (tmp_path / "smoke.png").read_bytes()[:4] == b"\x89PNG"
    assert "| ws | 2 |" in (tmp_path / "smoke.md").read_text()
    # Incremental modes prefill only the new item; the stateless one re-sends everything.
    last = {(r["mode"], r["agents"]): r for r in rows if r["turn"] == 3}
    assert last[("ws", 1)]["prefilled_tokens"] < last[("http-stateless", 1)]["prefilled_tokens"]
    assert last[("ws", 1)]["bytes_sent"] < last[("http-stateless", 1)]["bytes_sent"]
