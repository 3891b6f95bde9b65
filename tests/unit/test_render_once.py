"""A turn renders its prompt once: counting its input before `response.created` and running it
use the same rendering, so a continuation does no second history-sized piece of work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.core_turns import run_turns
from tether.backends import scripted
from tether.backends.base import Generation
from tether.backends.scripted import ScriptedBackend


def test_a_scripted_turn_renders_its_context_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[str] = []
    render = scripted.render

    def counting(generation: Generation) -> Any:
        rendered.append(generation.response_id)
        return render(generation)

    monkeypatch.setattr(scripted, "render", counting)
    first, second = run_turns(
        ScriptedBackend(), tmp_path / "t.db",
        {"input": "Hello.", "max_output_tokens": 4},
        {"input": "And again.", "previous_response_id": "{last}", "max_output_tokens": 4},
    )  # fmt: skip
    assert first["status"] == second["status"] == "completed"
    assert rendered == [first["id"], second["id"]]
