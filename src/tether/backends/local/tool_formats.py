"""How a model writes a tool call: the format its template teaches, or Tether's own.

A call is the JSON object `{"name": ..., <arguments key>: {...}}`, with markup around it:

- `hermes` (Tether's own, and the templates of Qwen 2.5 and 3 and Hermes 2 and 3): each call
  between `<tool_call>` and `</tool_call>`, the arguments under `arguments`.
- `llama3_json` (Llama 3.1 to 3.3): the calls are the whole answer, separated by `;`, the
  arguments under `parameters`.
- `mistral` (Mistral 7B v0.3, Nemo, Small): `[TOOL_CALLS]` (a token of its own), then the calls
  as one JSON list, up to the answer's end.
- `phi4_mini` (Phi-4-mini): `functools`, then the calls as one JSON list.
- `function_gemma` (FunctionGemma, Gemma 3 270M tuned for calls): each call between
  `<start_function_call>` and `<end_function_call>`, as `call:NAME{...}` in its own syntax.

A template writes tools and calls itself (`native`) when its markup says which format it
teaches: one that reads an assistant message's `tool_calls`, or Phi-4-mini's, which takes the
tools as a system message's `tools` and the calls as the assistant's text.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.backends.local.escaped import ESCAPE


@dataclass(frozen=True)
class ToolFormat:
    name: str  # as `/v1/models` names it
    open: str  # what starts the calls; "" when they are the answer itself
    close: str  # what ends them; "" when the answer's end does
    arguments_key: str  # the key of the call object the arguments are under
    separator: str = ""  # between the calls of one `open`; "" when each call has its own
    listed: bool = False  # the calls are a JSON list (`[...]`, `separator` ",")
    escaped: bool = False  # a call is `call:NAME{...}`, strings between <escape> (`escaped.py`)

    @property
    def markup(self) -> tuple[str, ...]:
        """What the model writes around and inside calls, less space around it."""
        return tuple(
            part for part in (self.open.strip(), self.close.strip(), ESCAPE if self.escaped else "") if part
        )


HERMES = ToolFormat("hermes", "<tool_call>\n", "\n</tool_call>", "arguments")
LLAMA3 = ToolFormat("llama3_json", "", "", "parameters", separator="; ")
MISTRAL = ToolFormat("mistral", "[TOOL_CALLS]", "", "arguments", separator=", ", listed=True)
PHI4_MINI = ToolFormat("phi4_mini", "functools", "", "arguments", separator=", ", listed=True)
FUNCTION_GEMMA = ToolFormat(
    "function_gemma", "<start_function_call>", "<end_function_call>", "", escaped=True
)


def native_format(template: str) -> ToolFormat | None:
    """The format of a template that writes the tools and calls itself; None for one that does
    not (it gets Tether's own tool text, in `HERMES`)."""
    if "<|tool|>" in template and "tools" in template and "<|end|>" in template:
        return PHI4_MINI
    if "tool_calls" not in template:
        return None
    if FUNCTION_GEMMA.open in template:
        return FUNCTION_GEMMA
    if HERMES.open.strip() in template:
        return HERMES
    if MISTRAL.open in template:
        return MISTRAL
    if "<|start_header_id|>" in template and f'"{LLAMA3.arguments_key}"' in template:
        return LLAMA3
    return None
