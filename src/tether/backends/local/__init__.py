"""The embedded engine: a GGUF model (SmolLM2-135M-Instruct by default) run by llama-cpp-python."""

from tether.backends.local.engine import LocalBackend

__all__ = ["LocalBackend"]
