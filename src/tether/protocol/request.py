"""`response.create` / `POST /v1/responses` bodies (spec §4.1.1, §10.2).

`parse_create` turns a decoded JSON object into a frozen `CreateRequest` or raises an `ApiError`
naming the offending `param`. Unknown top-level keys are ignored on both transports (D3, §10.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.protocol.errors import ApiError, invalid_request
from tether.protocol.items import Item, parse_input
from tether.protocol.prompt_cache import PromptCache, parse_prompt_cache
from tether.protocol.tools import FunctionTool, ToolChoice, parse_tool_choice, parse_tools

Transport = Literal["http", "ws"]

METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY_CHARS = 64
METADATA_MAX_VALUE_CHARS = 512


class _Body(BaseModel):
    """Scalar type checks; pydantic's first error becomes one `ApiError` with its `param`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str | None = None
    input: Any = None
    instructions: str | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    context_management: list[dict[str, Any]] | None = None
    tools: Any = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    max_tool_calls: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    include: list[str] | None = None
    store: bool | None = None
    metadata: dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    prompt: Any = None
    prompt_cache_key: str | None = None
    prompt_cache_options: dict[str, Any] | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    user: str | None = None
    service_tier: str | None = None
    stream: bool | None = None
    background: bool | None = None
    stream_options: dict[str, Any] | None = None
    generate: bool | None = None


class CreateRequest(BaseModel):
    """A validated create request; an invalid one cannot be constructed."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model: str | None
    input: tuple[Item, ...]
    instructions: str | None
    previous_response_id: str | None
    tools: tuple[FunctionTool, ...]
    tool_choice: ToolChoice
    tool_choice_echo: Any
    parallel_tool_calls: bool
    max_output_tokens: int | None
    max_tool_calls: int | None
    temperature: float
    top_p: float
    top_logprobs: int
    presence_penalty: float
    frequency_penalty: float
    reasoning: dict[str, Any]
    text: dict[str, Any]
    include: tuple[str, ...]
    store: bool
    metadata: dict[str, str]
    truncation: str
    prompt_cache_key: str | None
    prompt_cache: PromptCache  # `prompt_cache_options`, checked
    prompt_cache_retention: str | None
    safety_identifier: str | None
    user: str | None
    service_tier: str
    stream: bool
    background: bool
    generate: bool
    # It asked for automatic compaction (`context_management`), which Tether does not do; as on
    # OpenAI, such a response cannot be steered (§4.3).
    automatic_compaction: bool

    @property
    def include_reasoning_blobs(self) -> bool:
        """Its reasoning items are to carry their thinking sealed (`encrypted_content`)."""
        return "reasoning.encrypted_content" in self.include


def parse_create(body: Any, transport: Transport) -> CreateRequest:
    if not isinstance(body, Mapping):
        raise invalid_request("The request body must be a JSON object.")
    try:
        raw = _Body.model_validate(body)
    except ValidationError as exc:
        raise _from_validation(exc) from None
    _check_unsupported(raw, transport)
    tools = parse_tools(raw.tools)
    prompt_cache = parse_prompt_cache(raw.prompt_cache_options)
    return CreateRequest(
        model=raw.model,
        input=parse_input(raw.input),
        instructions=raw.instructions,
        previous_response_id=raw.previous_response_id,
        tools=tools,
        tool_choice=parse_tool_choice(raw.tool_choice, tools),
        tool_choice_echo=raw.tool_choice if raw.tool_choice is not None else "auto",
        parallel_tool_calls=True if raw.parallel_tool_calls is None else raw.parallel_tool_calls,
        max_output_tokens=raw.max_output_tokens,
        max_tool_calls=raw.max_tool_calls,
        temperature=1.0 if raw.temperature is None else raw.temperature,
        top_p=1.0 if raw.top_p is None else raw.top_p,
        top_logprobs=raw.top_logprobs or 0,
        presence_penalty=raw.presence_penalty or 0.0,
        frequency_penalty=raw.frequency_penalty or 0.0,
        reasoning={"effort": None, "summary": None, **(raw.reasoning or {})},
        text={"format": {"type": "text"}, "verbosity": "medium", **(raw.text or {})},
        include=tuple(raw.include or ()),
        store=True if raw.store is None else raw.store,
        metadata=_metadata(raw.metadata),
        truncation=raw.truncation or "disabled",
        prompt_cache_key=raw.prompt_cache_key,
        prompt_cache=prompt_cache,
        prompt_cache_retention=raw.prompt_cache_retention,
        safety_identifier=raw.safety_identifier,
        user=raw.user,
        service_tier="default" if raw.service_tier in (None, "auto") else raw.service_tier,
        stream=bool(raw.stream) or transport == "ws",
        background=bool(raw.background),
        generate=_generate(raw, transport, prompt_cache),
        automatic_compaction=any(entry.get("type") == "compaction" for entry in raw.context_management or ()),
    )


def without_namespaces(request: CreateRequest) -> CreateRequest:
    """`request` with the functions of its `namespace` tools dropped, like tools Tether cannot run."""
    return request.model_copy(update={"tools": tuple(t for t in request.tools if t.namespace is None)})


def parse_compact(body: Any) -> CreateRequest:
    """§10.9: a create body in which `model` is required."""
    if isinstance(body, Mapping) and not body.get("model"):
        raise invalid_request("Missing required parameter: 'model'.", "model")
    return parse_create(body, "http")


def previous_response_id_of(body: Any) -> str | None:
    """The `previous_response_id` a body names, read leniently: a create refused as invalid
    still tells which parent it meant to continue (§8.2 rule 4)."""
    value = body.get("previous_response_id") if isinstance(body, Mapping) else None
    return value if isinstance(value, str) else None


def _check_unsupported(raw: _Body, transport: Transport) -> None:
    if raw.previous_response_id is not None and raw.conversation is not None:
        raise invalid_request(
            "'previous_response_id' cannot be combined with 'conversation'.", "previous_response_id"
        )
    if raw.conversation is not None:
        raise invalid_request("The Conversations API is not supported here.", "conversation")
    if raw.prompt is not None:
        raise invalid_request("Prompt templates are not supported here.", "prompt")
    if transport == "ws" and raw.background:
        raise invalid_request("Background mode is not supported over WebSocket.", "background")
    if transport == "http":
        if raw.generate is False:
            raise invalid_request(
                "'generate: false' is only meaningful over a WebSocket connection.", "generate"
            )
        if raw.background and raw.store is False:
            raise invalid_request("Background mode requires 'store: true'.", "store")


def _generate(raw: _Body, transport: Transport, prompt_cache: PromptCache) -> bool:
    if prompt_cache.prewarm:
        return False  # §4.1.1: prewarm forces a warm-up, on either transport
    return transport == "http" or raw.generate is not False


def _metadata(value: dict[str, Any] | None) -> dict[str, str]:
    if not value:
        return {}
    if len(value) > METADATA_MAX_PAIRS:
        raise invalid_request(
            f"Invalid 'metadata': at most {METADATA_MAX_PAIRS} pairs, got {len(value)}.", "metadata"
        )
    for key, item in value.items():
        if len(key) > METADATA_MAX_KEY_CHARS:
            raise invalid_request(
                f"Invalid 'metadata': key '{key[:20]}…' is longer than {METADATA_MAX_KEY_CHARS} characters.",
                "metadata",
            )
        if not isinstance(item, str) or len(item) > METADATA_MAX_VALUE_CHARS:
            raise invalid_request(
                f"Invalid 'metadata.{key}': expected a string of at most "
                f"{METADATA_MAX_VALUE_CHARS} characters.",
                "metadata",
            )
    return dict(value)


def _from_validation(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    loc = first.get("loc") or ()
    param = str(loc[0]) if loc else None
    where = ".".join(str(part) for part in loc) or "body"
    return invalid_request(f"Invalid value for '{where}': {first.get('msg', 'invalid')}.", param)
