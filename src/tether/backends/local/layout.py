"""The layout of the weights the engine runs: the same weights, in the form that makes an agent
turn fastest on this machine.

An agent turn prefills ~190 new tokens and generates ~16, so prefill speed decides it. The
shipped SmolLM2 file is 4-bit (Q4_1), whose blocks llama.cpp's CPU kernels unpack on every
matrix product; the same weights re-quantised once to 8 bits (Q8_0, with llama.cpp's own
quantize call, under a second) need no unpacking and prefill faster on some CPUs, while reading
twice the bytes per decoded token. No layout wins everywhere, so the first start on a machine
times an agent-turn-shaped step on each and keeps the faster; the converted file and the choice
are cached (`cache_dir()`), per source file and thread count. 8 bits hold every 4- or 5-bit
value's information, so quality is unchanged: `tether bench weights` measures the perplexity of
both on the same text (docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

log = logging.getLogger(__name__)

Q8_0 = 7  # llama.cpp's `LLAMA_FTYPE_MOSTLY_Q8_0`
# File types whose weights Q8_0 holds without loss of what they carry: 4-, 5- and 6-bit quants
# (`LLAMA_FTYPE_MOSTLY_Q4_0` … `Q6_K`). Floating-point files would lose precision: left alone.
_CONVERTIBLE = {2: "Q4_0", 3: "Q4_1", 8: "Q5_0", 9: "Q5_1"} | {n: "K-quant" for n in range(10, 19)}

# The timed step: an agent turn's shape, scaled down (prefill slices of the engine's size).
_PREFILL_TOKENS = 128
_DECODED_TOKENS = 11
_SLICE = 64
_ROUNDS = 2  # each layout timed this often, interleaved; the fastest round counts
# Q8_0 is chosen only when clearly faster: a first start may be timed on a busy machine, and the
# file as shipped is what a user expects when the two are close.
_CLEARLY_FASTER = 0.95


@dataclass(frozen=True)
class Layout:
    """What the engine loads, and why (shown at start)."""

    path: Path
    name: str  # "Q8_0", or the file's own type
    reason: str


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tether" / "weights"


def fastest(source: Path, threads: int, cache: Path | None = None) -> Layout:
    """The layout to load for `source` on `threads` threads: converted and timed once, then
    remembered."""
    shipped = _file_type(source)
    if shipped not in _CONVERTIBLE:
        return Layout(source, f"file type {shipped}", "not a 4- to 6-bit quant: loaded as it is")
    cache = cache or cache_dir()
    converted = as_q8_0(source, cache)
    choices = converted.with_name(converted.name.replace(".Q8_0.gguf", ".choice.json"))
    chosen = _read_choice(choices, threads)
    if chosen is None:
        chosen = _time(source, converted, threads)
        _write_choice(choices, threads, chosen)
    as_shipped, as_q8 = chosen["seconds"]["shipped"], chosen["seconds"]["Q8_0"]
    timing = f"an agent-turn step took {as_q8:.2f} s as Q8_0, {as_shipped:.2f} s as {_CONVERTIBLE[shipped]}"
    if as_q8 < _CLEARLY_FASTER * as_shipped:
        return Layout(converted, "Q8_0", f"{timing}, on {threads} thread(s); cached at {converted}")
    return Layout(source, _CONVERTIBLE[shipped], f"{timing}, on {threads} thread(s)")


def as_q8_0(source: Path, cache: Path | None = None) -> Path:
    """`source` converted to Q8_0: once, into the cache, named after the source's version."""
    stat = source.stat()
    version = hashlib.sha256(f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[
        :12
    ]
    target = (cache or cache_dir()) / f"{source.stem}-{version}.Q8_0.gguf"
    _convert(source, target)
    return target


def shipped_name(path: Path) -> str:
    """The file's own layout, as shown at start and in the benchmark."""
    file_type = _file_type(path)
    return _CONVERTIBLE.get(file_type, f"file type {file_type}") if file_type is not None else "unknown"


def _file_type(path: Path) -> int | None:
    # Loading it whole is cheap (mmap, ~0.2 s); a vocabulary-only load makes llama.cpp warn.
    llm = Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
    try:
        value = llm.metadata.get("general.file_type")
        return int(value) if value is not None else None
    finally:
        llm.close()


def _convert(source: Path, target: Path) -> None:
    """Write `target` as Q8_0, once; several processes starting at once each write their own
    file and rename it into place, so a reader never sees half a file."""
    if target.is_file():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = Q8_0
    params.allow_requantize = True
    started = time.perf_counter()
    failed = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
    if failed:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"llama.cpp could not convert {source} to Q8_0 ({failed})")
    os.replace(partial, target)
    log.info("converted %s to Q8_0 in %.1f s: %s", source.name, time.perf_counter() - started, target)


def _time(shipped: Path, converted: Path, threads: int) -> dict[str, dict[str, float]]:
    models = {"shipped": shipped, "Q8_0": converted}
    contexts = {name: Llama(model_path=str(path), n_ctx=512, n_threads=threads, n_threads_batch=threads,
                            verbose=False) for name, path in models.items()}  # fmt: skip
    best = {name: float("inf") for name in models}
    try:
        for _ in range(_ROUNDS):
            for name, llm in contexts.items():
                best[name] = min(best[name], agent_step(llm))
    finally:
        for llm in contexts.values():
            llm.close()
    return {"seconds": best}


def agent_step(llm: Llama) -> float:
    """Seconds to prefill `_PREFILL_TOKENS` in slices, then decode `_DECODED_TOKENS` one by one."""
    llm.n_tokens = 0  # `eval` drops the KV from here on
    tokens = [100 + i for i in range(_PREFILL_TOKENS + _DECODED_TOKENS)]  # any ids time the same
    started = time.perf_counter()
    for start in range(0, _PREFILL_TOKENS, _SLICE):
        llm.eval(tokens[start : min(start + _SLICE, _PREFILL_TOKENS)])
    for token in tokens[_PREFILL_TOKENS:]:
        llm.eval([token])
    return time.perf_counter() - started


def _read_choice(path: Path, threads: int) -> dict[str, dict[str, float]] | None:
    try:
        choice: dict[str, dict[str, float]] | None = json.loads(path.read_text()).get(str(threads))
        return choice
    except (OSError, ValueError):
        return None


def _write_choice(path: Path, threads: int, choice: dict[str, dict[str, float]]) -> None:
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known[str(threads)] = choice
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(known, indent=2))
    os.replace(partial, path)
