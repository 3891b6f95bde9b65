"""Serve the models of OpenAI-compatible engines (vLLM, SGLang, llama-server, Ollama, …)."""

from tether.backends.upstream.backend import UpstreamBackend
from tether.backends.upstream.endpoint import Timeouts

__all__ = ["Timeouts", "UpstreamBackend"]
