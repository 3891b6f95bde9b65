"""`--upstream` values and how they combine with the other backend settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tether.config import Settings, upstream_route


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
        Settings(upstreams=(spec,))


def test_an_env_list_and_the_model_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_UPSTREAMS", "http://a:1, b=http://b:2/v1")
    monkeypatch.setenv("TETHER_UPSTREAM_MODEL", "served-by-a")
    assert Settings().upstream_routes() == [("served-by-a", "http://a:1/v1"), ("b", "http://b:2/v1")]


def test_upstreams_exclude_another_model_and_an_ambiguous_upstream_model() -> None:
    with pytest.raises(ValidationError, match="either --model or --upstream"):
        Settings(model="scripted", upstreams=("http://a:1",))
    with pytest.raises(ValidationError, match="exactly one"):
        Settings(upstreams=("http://a:1", "http://b:2"), upstream_model="m")
