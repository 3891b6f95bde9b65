"""How a model writes a tool call: the format its template teaches, or Tether's own.

A call is the JSON object `{"name": ..., <arguments key>: {...}}`, with markup around it:

- `hermes` (Tether's own, and the templates of Qwen 2.5 and 3 and Hermes 2 and 3): between
  `<tool_call>` and `</tool_call>`, the arguments under `arguments`; several in a turn.
- `llama3_json` (Llama 3.1 to 3.3): the object alone as the whole answer, the arguments under
  `parameters`.

A template writes tools and calls itself (`native`) when it reads an assistant message's
`tool_calls` and its markup says which format it teaches.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ToolFormat:
    name: str  # as `/v1/models` names it
    open: str  # what starts a call; "" when the call is the answer itself
    close: str  # what ends it; "" when the answer's end does
    arguments_key: str  # the key of the call object the arguments are under


HERMES = ToolFormat("hermes", "<tool_call>\n", "\n</tool_call>", "arguments")
LLAMA3 = ToolFormat("llama3_json", "", "", "parameters")


def native_format(template: str) -> ToolFormat | None:
    """The format of a template that writes the tools and calls itself; None for one that does
    not (it gets Tether's own tool text, in `HERMES`)."""
    if "tool_calls" not in template:
        return None
    if HERMES.open.strip() in template:
        return HERMES
    if "<|start_header_id|>" in template and f'"{LLAMA3.arguments_key}"' in template:
        return LLAMA3
    return None
