"""Settings: every limit and default of the server, declared once, in sections.

Each section is handed whole to the one part that uses it:

    listening   host, port, log_level                cli.py (uvicorn)
    auth        api_keys, api_keys_file, admin_keys  server/auth.py
    admission   rate_limit_*, ws_max_connections*    server/admission.py
    http        http_*                               server/http.py
    websocket   websocket, ws_*                      server/websocket.py, session.py, ws_protocol.py
    models      model, model_aliases,                app.py (which backend), core (served names,
                tool_namespaces, cache_diagnostics   tools offered, diagnostics)
    storage     db, db_*, held_history_bytes         app.py → the store; core (held histories)
    local       n_threads, n_ctx, *_bytes            backends/local
    upstream    upstreams, upstream_*                backends/upstream
    scripted    scripted_*                           backends/scripted.py
    shutdown    shutdown_*                           server/lifecycle.py

A setting has one flat name, which is its `tether serve` flag (`--ws-max-active-responses`) and,
upper-cased after `TETHER_`, its environment variable. The CLI's options and the README's table
are made from these declarations (`declarations()`); nothing else reads the environment. Keys are
`SecretStr`: no repr or log shows them.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from tether.logs import LogFormat
from tether.store.base import DEFAULT_TENANT

LOOPBACK_NAMES = frozenset({"localhost"})
TENANT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MiB = 1024 * 1024
REASONING_KEY_CHARS = 32  # a random secret that long cannot be guessed (in base64: 192 bits)


def setting(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    option: str | None = None,
    metavar: str | None = None,
    unset: str = "none",
    **bounds: Any,
) -> Any:
    """A setting's declaration: its default, what it does (the CLI's help and the README's text),
    its flat name when it is not the section's prefix + field name, its CLI option when it is not
    `--flat-name`, the placeholder of its value on the CLI, and how a default of None reads."""
    extra: dict[str, Any] = {"flag": flag, "option": option, "metavar": metavar, "unset": unset}
    return Field(default, description=help, json_schema_extra=extra, **bounds)


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    PREFIX: ClassVar[str] = ""  # before each field's name in its flat name


class Listening(Section):
    host: str = setting(
        "127.0.0.1",
        "Address to listen on. A non-loopback address is refused unless at least one API key is configured.",
        metavar="H",
    )
    port: int = setting(8000, "TCP port (0 picks a free one).", metavar="P", ge=0, le=65535)
    log_level: str = setting("info", "Log level.", metavar="L")
    log_format: LogFormat = setting(
        "text",
        "Log lines as text, or as JSON objects (one a line) carrying the request, connection and "
        "response ids.",
        metavar="F",
    )
    workers: int = setting(
        1,
        "Processes serving the one port, each with its own event loop (a supervisor restarts one "
        "that dies). They share the store, which must then be PostgreSQL, and every limit is per "
        "process. Not with the embedded local model: its engine, threads and KV cache are one "
        "process's (run one process, or serve the model from an engine with `--upstream`).",
        metavar="N",
        ge=1,
    )


class Auth(Section):
    api_keys: tuple[SecretStr, ...] = setting(
        (),
        "When any key is set (here or in a keys file), every request needs `Authorization: Bearer "
        "KEY`; otherwise 401 `invalid_api_key`. `/healthz` stays open. These keys belong to the "
        "tenant `default`.",
        option="--api-key",
        metavar="KEY",
    )
    api_keys_file: Path | None = setting(
        None,
        "Tenants' keys, one `TENANT KEY` per line (`#` starts a comment; a tenant may have several "
        "keys). Each tenant sees only its own responses: another tenant's id, stored or running, "
        "gets exactly the answer an unknown id gets, so ids cannot be probed. Keys are compared in "
        "constant time and never logged. SIGHUP re-reads the file (a broken file, or one that would "
        "leave no keys, is refused and logged; the keys in use stay).",
        metavar="PATH",
    )
    admin_keys: tuple[SecretStr, ...] = setting(
        (),
        "Keys that open the live inspector (`/inspector`) on every tenant's connections and on the "
        "engine; a tenant's key opens it on that tenant's own. An admin key is also an API key of "
        "the tenant `default`. With no key of any kind, the inspector is as open as the API.",
        option="--admin-key",
        metavar="KEY",
    )
    reasoning_key: SecretStr | None = setting(
        None,
        "The secret (32 characters or more) that seals the thinking in reasoning items' "
        "`encrypted_content`, for clients that replay it (`include: "
        '["reasoning.encrypted_content"]`). Unset: a random key made once and kept in the store, '
        "so every process sharing the store opens what any of them sealed. A blob that does not "
        "open (altered, another tenant's, sealed under another key) is dropped from the input.",
        metavar="SECRET",
        unset="kept in the store",
    )

    @field_validator("reasoning_key")
    @classmethod
    def _check_reasoning_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < REASONING_KEY_CHARS:
            raise ValueError(f"a reasoning key needs at least {REASONING_KEY_CHARS} characters")
        return value

    def tenant_keys(self) -> dict[str, str]:
        """Every bearer key and the tenant it belongs to; raises ValueError naming a bad line."""
        every = (*self.api_keys, *self.admin_keys)
        keys = dict.fromkeys((key.get_secret_value() for key in every), DEFAULT_TENANT)
        if self.api_keys_file is None:
            return keys
        try:
            text = self.api_keys_file.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read the keys file: {exc}") from None
        for number, line in enumerate(text.splitlines(), 1):
            fields = line.split("#", 1)[0].split()
            if not fields:
                continue
            where = f"{self.api_keys_file}, line {number}"
            if len(fields) != 2 or not TENANT_NAME.fullmatch(fields[0]):
                raise ValueError(
                    f"{where}: expected 'TENANT KEY', the tenant in letters, digits, '.', '_', '-'"
                )
            tenant, key = fields
            if keys.setdefault(key, tenant) != tenant:
                raise ValueError(f"{where}: this key already belongs to tenant {keys[key]!r}")
        return keys

    def admins(self) -> frozenset[str]:
        return frozenset(key.get_secret_value() for key in self.admin_keys)


class AdmissionLimits(Section):
    rate_limit_rps: float | None = setting(
        None,
        "Requests per second per API key, counting HTTP requests under `/v1` and WebSocket "
        "creates; over it: 429 `rate_limit_exceeded` with `retry-after` (a header over HTTP, "
        "`error.headers` on a WebSocket, whose connection stays open).",
        metavar="R",
        unset="no limit",
        gt=0,
    )
    rate_limit_burst: float | None = setting(
        None,
        "Requests a key may make at once before its rate applies.",
        metavar="N",
        unset="one second's worth",
        ge=1,
    )
    ws_max_connections: int | None = setting(
        None,
        "Open WebSocket connections in total; one more upgrade gets 503 with `retry-after` "
        "(another instance can take it).",
        metavar="N",
        unset="no limit",
        ge=1,
    )
    ws_max_connections_per_key: int | None = setting(
        None,
        "Open WebSocket connections per API key; one more upgrade gets 429.",
        metavar="N",
        unset="no limit",
        ge=1,
    )
    max_loop_lag_ms: float | None = setting(
        250.0,
        "Overload: while this process's event loop runs this late (the median of the last "
        "second), every new request under `/v1` — HTTP requests, WebSocket upgrades and creates "
        "— gets 503 with `retry-after` (the SDKs retry; a load balancer can send it elsewhere), "
        "so that what runs keeps going and handshakes and pings are still answered in time. "
        "Each process of `--workers` measures its own.",
        metavar="MS",
        unset="never refuse",
        gt=0,
    )


class HttpLimits(Section):
    PREFIX = "http_"
    max_body_bytes: int = setting(
        64 * MiB,
        "Largest HTTP request body; a larger one gets 413 `request_too_large` (before it is read, "
        "when its length is declared).",
        metavar="N",
        ge=1024,
    )


class WebSocketLimits(Section):
    PREFIX = "ws_"
    enabled: bool = setting(
        True,
        "WebSocket mode on `/v1/responses`; off answers upgrades with 426 (Codex then uses HTTP at once).",
        flag="websocket",
    )
    max_message_bytes: int = setting(
        64 * MiB,
        "Largest inbound message (Codex sends base64 images); a larger one closes the socket with 1009.",
        metavar="N",
        ge=1024,
    )
    max_active_responses: int = setting(
        16,
        "Responses running at once per connection, all lanes together; more creates wait their turn (D4).",
        metavar="N",
        ge=1,
    )
    max_named_lanes: int = setting(
        32,
        "Distinct `stream_id` lanes per connection over its life; the next one gets "
        "`websocket_stream_limit_reached` (D4).",
        metavar="N",
        ge=0,
    )
    max_queued_creates: int = setting(
        64,
        "Creates accepted but not yet started per connection, all lanes together; one more gets "
        "429 `rate_limit_exceeded`.",
        metavar="N",
        ge=1,
    )
    max_queued_bytes: int = setting(
        64 * MiB,
        "Bytes of the creates accepted but not yet started per connection, all lanes together; a "
        "create that would pass it gets 429 `rate_limit_exceeded` (a create alone in the queue "
        "always waits: the message limit bounds it).",
        metavar="N",
        ge=1024,
    )
    cached_responses: int = setting(
        8,
        "Responses a connection keeps in memory to continue from, besides each lane's latest "
        "(§8.2); an older one is continued from the store, or is not found if `store: false`.",
        metavar="N",
        ge=0,
    )
    max_pending_steers: int = setting(
        8,
        "Steers queued for one response and not yet applied; one more gets "
        "`response.steer.failed` with `too_many_pending_steers` (§8.6).",
        metavar="N",
        ge=1,
    )
    connection_cap_s: float = setting(
        3600.0,
        "Connection lifetime cap: later creates get `websocket_connection_limit_reached`, and the "
        "socket closes with 1001 once nothing runs. A running response is never cut (D5).",
        metavar="S",
        gt=0,
    )
    send_queue_events: int = setting(
        256,
        "Events queued per connection; when a client reads slower than the model writes, "
        "generation waits instead of memory growing.",
        metavar="N",
        ge=1,
    )
    send_stall_s: float = setting(
        60.0,
        "A client that has read nothing for this long while events wait for it is disconnected "
        "(TCP abort after a 1013 close frame; logged), and its responses stop as for any client "
        "that leaves.",
        metavar="S",
        gt=0,
    )
    ping_interval_s: float | None = setting(
        20.0,
        "Server pings keep idle connections alive through NATs and proxies; unset: no pings. Idle "
        "connections are never closed before the cap.",
        metavar="S",
        gt=0,
    )
    ping_timeout_s: float | None = setting(
        20.0,
        "A peer whose pong is this late is cut off (close 1011, then TCP abort); unset: wait forever.",
        metavar="S",
        gt=0,
    )


class Models(Section):
    model: str = setting(
        "local",
        "`local`: the embedded SmolLM2-135M-Instruct through llama.cpp. A path: any other `.gguf` "
        "file. `scripted`: a deterministic model for tests and benchmarks. Its rules: with no "
        "callable function tool or `tool_choice` `none` it answers text; with `tool_choice` "
        "`required` or a named function it calls that tool (or the first one) with arguments that "
        "satisfy the tool's schema; with `auto` it calls a tool when the last input item is a user "
        "message (the one the message names, else the first), and answers text after a tool "
        "output; a custom tool's input is what that message quotes between ``` fences (else "
        "`example`). Text is exactly `max_output_tokens` tokens long when set (else 16); a token "
        "is 4 bytes.",
        metavar="M",
    )
    model_aliases: tuple[str, ...] = setting(
        (),
        "Extra names clients may put in `model` (e.g. the name your agent is configured with).",
        option="--model-alias",
        metavar="NAME",
    )
    tool_namespaces: bool = setting(
        True,
        "Offer the model the functions of `namespace` tools (Codex's multi-agent tools are one, "
        "~2,800 tokens of its prompt); off, they are dropped like the tools Tether cannot run: "
        "for a model whose context cannot hold them (the embedded SmolLM2's 8,192 tokens cannot "
        "hold Codex's prompt with them).",
    )
    cache_diagnostics: bool = setting(
        False,
        "Give every continuation `prompt_cache_diagnostics` against the response it continues, "
        "as if it had asked (`prompt_cache_options.comparison_response_id`); misses are counted "
        "by reason in `/metrics`.",
    )


class Storage(Section):
    db: str = setting(
        "tether.db",
        "Where `store: true` responses live: a SQLite file (WAL mode; one process), or a "
        "`postgresql://USER:PASSWORD@HOST:PORT/DATABASE` URL that several Tether processes share.",
        metavar="PATH|URL",
        repr=False,  # a URL may hold a password
    )
    held_history_bytes: int = setting(
        64 * MiB,
        "Memory for the parsed histories of recent stored responses, so that continuing one over "
        "HTTP asks the store only whether its chain is still whole. LRU; one not held is read "
        "from the store.",
        metavar="N",
        ge=0,
    )
    db_max_connections: int = setting(
        10,
        "PostgreSQL: connections each Tether process keeps open to the database at most.",
        metavar="N",
        ge=1,
    )
    orphan_after_s: float = setting(
        10.0,
        "A process that stops renewing its lease in the store for this long (killed, frozen, cut "
        "off from the database) is taken for dead: another process sharing the store ends its "
        "running `store: true` responses `failed` (`server_error`) within a third of this more. "
        "With SQLite, the next start does.",
        metavar="S",
        gt=0,
    )

    @field_validator("db")
    @classmethod
    def _check_db(cls, value: str) -> str:
        store_location(value)  # raises with what is wrong
        return value

    def location(self) -> tuple[StoreKind, str]:
        return store_location(self.db)


class LocalEngine(Section):
    fastest_weights: bool = setting(
        True,
        "Run a 4- to 6-bit GGUF as Q8_0 when that makes an agent turn faster on this machine "
        "(the same weights, converted once and timed once, cached under ~/.cache/tether/weights); "
        "the choice is logged at start. Off: the file as it is.",
    )
    n_threads: int = setting(2, "Most CPU threads of the embedded engine.", metavar="N", ge=1)
    tune_threads: bool = setting(
        True,
        "Run each step of the embedded engine on as many of its threads as other work leaves "
        "cores free (read from the kernel's CPU accounting twice a second), so that a busy "
        "machine slows it in proportion instead of stalling its spinning threads; off: always all.",
    )
    n_ctx: int = setting(
        8192,
        "Context window of each conversation in the embedded engine, in tokens (at most the one "
        "the model was trained for).",
        metavar="N",
        ge=256,
    )
    n_sequences: int = setting(
        4,
        "Conversations the embedded engine holds and runs at once, each with its own `n_ctx` of "
        "KV (~23 KB a token for SmolLM2-135M: 4 x 8192 tokens take ~750 MB). More live agents "
        "than this take turns, their KV snapshotted in between.",
        metavar="N",
        ge=1,
    )
    kv_cache_bytes: int = setting(
        2 * 1024 * MiB,
        "Memory for KV snapshots of conversations that are not in the engine right now (~23 KB a "
        "token for SmolLM2-135M, so 2 GiB holds ~90k tokens). LRU; the latest response of a live "
        "WebSocket lane goes last. An evicted conversation is re-prefilled from its token ids, "
        "never an error.",
        metavar="N",
        ge=0,
    )
    chat_template: str | None = setting(
        None,
        "How prompts are rendered for the model: `chatml`; `gemma` (Gemma's turns, for the Gemma "
        "files that carry no template, such as the base models); or a Jinja file in Hugging "
        "Face's format. Unset: the template in the model file, else ChatML.",
        metavar="NAME|PATH",
        unset="the model file's",
    )
    token_record_bytes: int = setting(
        64 * MiB,
        "Memory for the token ids of recent conversations (4 bytes a token, ~48 a message for "
        "its content address), which let a continuation tokenize only its new items, whether it "
        "names its parent or resends the history. LRU; a conversation without one is tokenized "
        "whole.",
        metavar="N",
        ge=0,
    )


class Upstream(Section):
    PREFIX = "upstream_"
    urls: tuple[str, ...] = setting(
        (),
        "Serve OpenAI-compatible engines instead of a local model. `URL` serves every model the "
        "engine lists; `NAME=URL` serves model `NAME` from it. A URL without a path gets `/v1`.",
        flag="upstreams",
        option="--upstream",
        metavar="URL|NAME=URL",
    )
    model: str | None = setting(
        None,
        "With a single `--upstream URL`: serve just this model of it, without asking the engine.",
        metavar="NAME",
    )
    api_key: SecretStr | None = setting(
        None, "Sent to the engines as `Authorization: Bearer KEY`.", metavar="KEY"
    )
    connect_timeout_s: float = setting(5.0, "Longest wait to connect to an engine.", metavar="S", gt=0)
    read_timeout_s: float = setting(
        300.0,
        "Longest silence from an engine (its prefill included) before the response fails.",
        metavar="S",
        gt=0,
    )
    attempts: int = setting(
        2,
        "Tries of a request whose stream an engine cut before anything reached the client.",
        metavar="N",
        ge=1,
    )
    max_connections: int = setting(
        1024,
        "Connections open to each engine at once, one per streaming response; more wait for one.",
        metavar="N",
        ge=1,
    )

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for spec in value:
            upstream_route(spec)  # raises with what is wrong
        return value

    def routes(self) -> list[tuple[str | None, str]]:
        """(model name or None to ask the engine, base URL) per upstream."""
        routes = [upstream_route(spec) for spec in self.urls]
        return [(name or self.model, url) for name, url in routes]


class ScriptedModel(Section):
    PREFIX = "scripted_"
    prefill_us: float = setting(
        0.0,
        "Scripted model: microseconds per input token not already cached for the conversation.",
        metavar="US",
        ge=0,
    )
    decode_us: float = setting(0.0, "Scripted model: microseconds per output token.", metavar="US", ge=0)
    overhead_ms: float = setting(0.0, "Scripted model: fixed milliseconds per response.", metavar="MS", ge=0)


class Shutdown(Section):
    PREFIX = "shutdown_"
    grace_s: float = setting(
        10.0,
        "On SIGTERM/Ctrl-C the server stops accepting connections and running responses get this "
        "long to finish; WebSockets refuse new creates (503) and close with 1012 once idle. What "
        "is still running after it ends `incomplete` / `interrupted` and is stored. A SIGTERM "
        "shutdown exits 0.",
        metavar="S",
        ge=0,
    )
    final_flush_s: float = setting(
        2.0,
        "After the grace: how long the interrupted responses get to send their terminal events.",
        metavar="S",
        ge=0,
    )
    final_close_s: int = setting(
        1,
        "After that: how long the connections just closed get to finish before they are dropped.",
        metavar="S",
        ge=0,
    )


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    listening: Listening = Listening()
    auth: Auth = Auth()
    admission: AdmissionLimits = AdmissionLimits()
    http: HttpLimits = HttpLimits()
    websocket: WebSocketLimits = WebSocketLimits()
    models: Models = Models()
    storage: Storage = Storage()
    local: LocalEngine = LocalEngine()
    upstream: Upstream = Upstream()
    scripted: ScriptedModel = ScriptedModel()
    shutdown: Shutdown = Shutdown()

    @model_validator(mode="after")
    def _one_backend(self) -> Settings:
        if self.upstream.urls and self.models.model != "local":
            raise ValueError("give either --model or --upstream, not both")
        unnamed = [spec for spec in self.upstream.urls if upstream_route(spec)[0] is None]
        if self.upstream.model is not None and len(unnamed) != 1:
            raise ValueError("--upstream-model names the model of exactly one '--upstream URL'")
        return self

    @model_validator(mode="after")
    def _workers_share_state(self) -> Settings:
        if self.listening.workers == 1:
            return self
        if self.storage.location()[0] != "postgresql":
            raise ValueError(
                "--workers needs a PostgreSQL store (--db postgresql://…): a SQLite file is one "
                "process's, which alone can tell its running responses from a dead process's"
            )
        if not self.upstream.urls and self.models.model != "scripted":
            raise ValueError(
                "--workers does not apply to the embedded local model: each process would load the "
                "model and run its threads on the same cores; serve it from one process, or put the "
                "model behind an engine and use --upstream"
            )
        return self

    @classmethod
    def load(
        cls, values: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Settings from flat-named `values` (the CLI's), then `TETHER_*` variables of `environ`
        (the process's by default), then the declared defaults. Lists in a variable are
        comma-separated."""
        values = values or {}
        environ = os.environ if environ is None else environ
        sections: dict[str, dict[str, Any]] = {}
        for declaration in declarations():
            value = values.get(declaration.flag)
            if value is None and declaration.env in environ:
                value = _from_env(environ[declaration.env], declaration.is_list)
            if value is not None:
                sections.setdefault(declaration.section, {})[declaration.field] = value
        return cls.model_validate(sections)

    @property
    def listens_on_loopback(self) -> bool:
        host = self.listening.host
        if host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            return False


def _from_env(text: str, is_list: bool) -> str | tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip()) if is_list else text


@dataclass(frozen=True)
class Declaration:
    """One setting as the CLI, the environment and the README see it."""

    section: str
    field: str
    flag: str  # the flat name
    cli_option: str | None
    annotation: Any
    default: Any
    help: str
    metavar: str | None
    unset: str

    @property
    def env(self) -> str:
        return "TETHER_" + self.flag.upper()

    @property
    def option(self) -> str:
        """The CLI option (a list's is repeated: `--api-key K --api-key L`)."""
        return self.cli_option or "--" + self.flag.replace("_", "-")

    @property
    def value_type(self) -> type:
        """The type of one value, None and lists aside (a secret, or one of a few words, is given
        as text)."""
        if get_origin(self.annotation) is Literal:
            return str
        args = [a for a in get_args(self.annotation) if a is not type(None)] or [self.annotation]
        base = args[0]
        if get_origin(base) is tuple:
            base = get_args(base)[0]
        return str if base is SecretStr else base

    @property
    def is_list(self) -> bool:
        return get_origin(self.annotation) is tuple

    def default_text(self) -> str:
        if self.default is None or self.default == ():
            return self.unset
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        if isinstance(self.default, float) and self.default.is_integer():
            return f"`{int(self.default)}`"
        return f"`{self.default}`"


def declarations() -> Iterator[Declaration]:
    """Every setting, section by section, in the order declared."""
    for section_name, section_field in Settings.model_fields.items():
        section = section_field.annotation
        assert isinstance(section, type) and issubclass(section, Section)
        for name, field in section.model_fields.items():
            extra = field.json_schema_extra
            assert isinstance(extra, dict)
            flag = extra["flag"] or section.PREFIX + name
            yield Declaration(
                section=section_name,
                field=name,
                flag=str(flag),
                cli_option=None if extra["option"] is None else str(extra["option"]),
                annotation=field.annotation,
                default=field.default,
                help=field.description or "",
                metavar=None if extra["metavar"] is None else str(extra["metavar"]),
                unset=str(extra["unset"]),
            )


def markdown_table() -> str:
    """The README's table of settings, made from the declarations."""
    rows = ["| flag | environment | default | what it does |", "|---|---|---|---|"]
    for d in declarations():
        if d.value_type is bool:
            flag = f"`{d.option}/--no-{d.option[2:]}`"
        else:
            flag = f"`{d.option} {d.metavar or 'VALUE'}`" + (" (repeatable)" if d.is_list else "")
        rows.append(f"| {flag} | `{d.env}` | {d.default_text()} | {d.help} |")
    return "\n".join(rows)


StoreKind = Literal["sqlite", "postgresql"]


def store_location(db: str) -> tuple[StoreKind, str]:
    """`--db` → which store and where: a path or `sqlite:///PATH` is SQLite, a `postgresql://` (or
    `postgres://`) URL is PostgreSQL; any other URL is refused, rather than taken for a file name."""
    scheme, sep, rest = db.partition("://")
    if not sep:
        return "sqlite", db
    if scheme == "sqlite":
        return "sqlite", rest.removeprefix("/") if rest.startswith("//") else rest
    if scheme in ("postgresql", "postgres"):
        return "postgresql", db
    raise ValueError(f"--db {scheme}://…: expected a SQLite path, sqlite:///PATH or postgresql://…")


def masked(url: str) -> str:
    """A URL as it may be shown: the password in it, if any, replaced by ***."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def upstream_route(spec: str) -> tuple[str | None, str]:
    """'URL' or 'NAME=URL' → (NAME or None, base URL ending in the API root, e.g. '/v1').

    A URL without a path gets '/v1', where every OpenAI-compatible engine serves; one with a path
    is taken as the API root it names (like an SDK's `base_url`)."""
    name, sep, url = spec.partition("=")
    if not sep or "://" in name:
        name, url = "", spec
    elif not name.strip():
        raise ValueError(f"upstream {spec!r}: the model name before '=' is empty")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"upstream {spec!r}: expected URL or NAME=URL with an http(s) URL")
    path = parts.path.rstrip("/") or "/v1"
    return (name.strip() or None, f"{parts.scheme}://{parts.netloc}{path}")
