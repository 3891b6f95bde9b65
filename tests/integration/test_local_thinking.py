"""A thinking model's template on the local engine: what the model writes in its thinking comes
out as a `reasoning` item, never as text."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai.types.responses import ResponseReasoningItem

from tests.conftest import LOCAL
from tests.server_process import TetherServer

pytestmark = pytest.mark.local_model

THINKING = Path(__file__).parents[1] / "data/thinking.jinja"


def test_a_turn_opened_in_thinking_thinks_in_a_reasoning_item(tmp_path: Path) -> None:
    """The template opens the model's turn with <think>; SmolLM2 never learned to close it, so
    all it writes within the budget is thinking."""
    with TetherServer(tmp_path / "tether.db", "--chat-template", str(THINKING), model="local") as server:
        response = server.client().responses.create(
            model=LOCAL, input="Hello!", max_output_tokens=6, temperature=0
        )
    [reasoning] = response.output
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.content and reasoning.content[0].text
    assert response.status == "incomplete" and response.output_text == ""
