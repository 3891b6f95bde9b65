"""Settings: declared once, read from flags and the environment, and `--upstream` values."""

from __future__ import annotations

import pytest
import typer
from pydantic import ValidationError

from tether.cli import app
from tether.config import Settings, WebSocketLimits, declarations, masked, upstream_route
from tether.server.ws_protocol import HOOKS, missing_hooks


@pytest.mark.parametrize(
    ("spec", "route"),
    [
        ("http://127.0.0.1:8000", (None, "http://127.0.0.1:8000/v1")),
        ("http://127.0.0.1:8000/", (None, "http://127.0.0.1:8000/v1")),
        ("https://engine.internal/v1/", (None, "https://engine.internal/v1")),
        ("http://ollama:11434/api/openai", (None, "http://ollama:11434/api/openai")),
        ("qwen=http://vllm:8000/v1", ("qwen", "http://vllm:8000/v1")),
        ("org/model-7b=http://sglang:30000", ("org/model-7b", "http://sglang:30000/v1")),
    ],
)
def test_upstream_route(spec: str, route: tuple[str | None, str]) -> None:
    assert upstream_route(spec) == route


@pytest.mark.parametrize("spec", ["localhost:8000", "name=", "ftp://x/v1", "=http://x"])
def test_a_bad_upstream_is_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        Settings.load({"upstreams": (spec,)})


def test_an_env_list_and_the_model_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_UPSTREAMS", "http://a:1, b=http://b:2/v1")
    monkeypatch.setenv("TETHER_UPSTREAM_MODEL", "served-by-a")
    routes = Settings.load().upstream.routes()
    assert routes == [("served-by-a", "http://a:1/v1"), ("b", "http://b:2/v1")]


def test_upstreams_exclude_another_model_and_an_ambiguous_upstream_model() -> None:
    with pytest.raises(ValidationError, match="either --model or --upstream"):
        Settings.load({"model": "scripted", "upstreams": ("http://a:1",)})
    with pytest.raises(ValidationError, match="exactly one"):
        Settings.load({"upstreams": ("http://a:1", "http://b:2"), "upstream_model": "m"})


def test_every_setting_is_one_option_of_tether_serve_and_one_variable() -> None:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    options = {name for param in serve.params for name in param.opts if name != "--help"}
    declared = list(declarations())
    assert options == {d.option for d in declared}
    assert len({d.env for d in declared}) == len(declared) == len({d.flag for d in declared})


def test_flags_win_over_the_environment_which_wins_over_the_default() -> None:
    environ = {"TETHER_WS_MAX_ACTIVE_RESPONSES": "4", "TETHER_PORT": "9000", "TETHER_WEBSOCKET": "false"}
    settings = Settings.load({"port": 9100}, environ)
    assert settings.listening.port == 9100
    assert settings.websocket.max_active_responses == 4 and settings.websocket.enabled is False
    assert settings.websocket.max_named_lanes == WebSocketLimits().max_named_lanes


def test_keys_never_show_in_a_repr() -> None:
    settings = Settings.load({"api_keys": ("sk-alice-secret",), "upstream_api_key": "sk-engine-secret"})
    assert settings.auth.tenant_keys() == {"sk-alice-secret": "default"}
    assert settings.upstream.api_key is not None
    assert settings.upstream.api_key.get_secret_value() == "sk-engine-secret"
    for text in (repr(settings), str(settings), repr(settings.auth), settings.model_dump_json()):
        assert "secret" not in text


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_actve"):
        WebSocketLimits(max_actve=3)  # type: ignore[call-arg]


def test_the_websocket_guards_name_every_uvicorn_hook_they_need() -> None:
    assert missing_hooks() == []  # the installed uvicorn has them all
    assert missing_hooks(object) == list(HOOKS)


@pytest.mark.parametrize(
    ("db", "location"),
    [
        ("tether.db", ("sqlite", "tether.db")),
        ("/var/lib/tether/t.db", ("sqlite", "/var/lib/tether/t.db")),
        ("sqlite:///var/lib/tether/t.db", ("sqlite", "/var/lib/tether/t.db")),
        ("postgresql://u:p@db:5432/tether", ("postgresql", "postgresql://u:p@db:5432/tether")),
        ("postgres://db/tether", ("postgresql", "postgres://db/tether")),
    ],
)
def test_db_names_a_sqlite_file_or_a_postgresql_url(db: str, location: tuple[str, str]) -> None:
    assert Settings.load({"db": db}).storage.location() == location


@pytest.mark.parametrize("db", ["mysql://db/tether", "redis://cache:6379", "https://example.com/x"])
def test_any_other_url_is_refused_not_taken_for_a_file(db: str) -> None:
    with pytest.raises(ValidationError, match="expected a SQLite path"):
        Settings.load({"db": db})


def test_a_database_password_is_masked_and_kept_out_of_the_repr() -> None:
    settings = Settings.load({"db": "postgresql://tether:hunter2@db:5432/tether"})
    assert "hunter2" not in repr(settings)
    assert masked(settings.storage.db) == "postgresql://tether:***@db:5432/tether"
    assert masked("postgresql://db/tether") == "postgresql://db/tether"
