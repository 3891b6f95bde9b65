"""Serve the models of OpenAI-compatible engines (vLLM, SGLang, llama-server, Ollama, …)."""

from tether.backends.upstream.backend import UpstreamBackend

__all__ = ["UpstreamBackend"]
