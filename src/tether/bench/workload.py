"""The standard agent rollout (docs/benchmarks.md): what every mode sends, turn by turn.

An agent starts with ~600 tokens of instructions, 4 function tools with JSON-schema parameters
and an ~80-token task. Then, for each of N turns, the model answers and the agent replies with a
~150-token tool result: a `function_call_output` when the model called a tool, otherwise a user
message carrying the same kind of text. Every text is made deterministically from (agent, turn),
so all modes and servers see the same conversation, except for the name of the run at the start
of the task: on one server, each mode and repeat gets its own, because a server that reuses
cached state by content (Tether does) must not find the turns an earlier run left in it, only the
instructions and tools all agents share.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

INSTRUCTIONS_TOKENS = 600
TASK_TOKENS = 80
TOOL_RESULT_TOKENS = 150
CHARS_PER_TOKEN = 4  # English prose in SmolLM2's tokenizer, roughly

_WORDS = (
    "repository module function test build failure patch branch commit review lint type error "
    "value config server client request response cache token stream socket buffer latency "
    "retry timeout schema field index query table migration deploy release version package "
    "install import export parse render format check assert fixture mock log trace metric"
).split()

TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "read_file", "description": "Read a file of the repository.",
     "parameters": {"type": "object", "properties": {"path": {"type": "string"},
                    "start_line": {"type": "integer"}, "end_line": {"type": "integer"}},
                    "required": ["path"], "additionalProperties": False}},
    {"type": "function", "name": "run_tests", "description": "Run the test suite or a subset of it.",
     "parameters": {"type": "object", "properties": {"selector": {"type": "string"},
                    "verbose": {"type": "boolean"}}, "required": [], "additionalProperties": False}},
    {"type": "function", "name": "search_code", "description": "Search the code for a pattern.",
     "parameters": {"type": "object", "properties": {"pattern": {"type": "string"},
                    "max_results": {"type": "integer", "minimum": 1}}, "required": ["pattern"],
                    "additionalProperties": False}},
    {"type": "function", "name": "apply_patch", "description": "Apply a unified diff to the tree.",
     "parameters": {"type": "object", "properties": {"patch": {"type": "string"}},
                    "required": ["patch"], "additionalProperties": False}},
]  # fmt: skip


def prose(tokens: int, seed: str) -> str:
    """About `tokens` tokens of deterministic text."""
    rng = random.Random(seed)
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < tokens * CHARS_PER_TOKEN:
        words.append(rng.choice(_WORDS))
    sentences = [" ".join(words[i : i + 12]).capitalize() + "." for i in range(0, len(words), 12)]
    return " ".join(sentences)


@dataclass(frozen=True)
class Rollout:
    """One agent's conversation: fixed parts, and the reply it sends after each model output."""

    agent: int
    turns: int
    run: str = ""  # names the run, so that no two runs on one server share a task

    @property
    def instructions(self) -> str:
        return "You are a coding agent working in a Python repository. " + prose(INSTRUCTIONS_TOKENS, "rules")

    @property
    def task(self) -> str:
        return f"Task ({self.run}): " + prose(TASK_TOKENS, f"task-{self.agent}")

    def reply(self, turn: int, model_output: list[dict[str, Any]]) -> dict[str, Any]:
        """The agent's next input item, given the model's output items of `turn`."""
        result = prose(TOOL_RESULT_TOKENS, f"result-{self.agent}-{turn}")
        call = next((item for item in model_output if item.get("type") == "function_call"), None)
        if call is not None:
            return {"type": "function_call_output", "call_id": call["call_id"], "output": result}
        return {"role": "user", "content": f"Tool output:\n{result}"}
