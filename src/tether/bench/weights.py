"""`tether bench weights`: the same weights in two layouts, side by side: quality and speed.

Quality is the perplexity of each on one English text (`perplexity.txt`, ~1,000 tokens, written
for this benchmark): the exponential of the mean negative log-likelihood of every token given
the ones before it. Speed is prefill and decode tokens per second, and the agent-turn-shaped step
the engine chooses its layout by (`backends/local/layout.py`), timed in interleaved rounds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from llama_cpp import Llama

from tether.backends.local import layout

TEXT = Path(__file__).with_name("perplexity.txt")
PREFILL_TOKENS = 512
DECODED_TOKENS = 32
SLICE = 64  # the engine's prefill slice


@dataclass(frozen=True)
class LayoutResult:
    layout: str
    file_mb: float
    perplexity: float
    prefill_tokens_per_s: float  # medians over the rounds
    decode_tokens_per_s: float
    agent_step_s: float


def measure(
    files: dict[str, Path], threads: int, rounds: int, advance: Callable[[], None]
) -> list[LayoutResult]:
    """Every layout in `files` (name -> GGUF), speed rounds interleaved so that the machine's
    drift hits them alike; `advance` is called once per layout and round."""
    quality = {name: perplexity(path, threads) for name, path in files.items()}
    models = {name: Llama(model_path=str(path), n_ctx=1024, n_threads=threads, n_threads_batch=threads,
                          verbose=False) for name, path in files.items()}  # fmt: skip
    try:
        text = next(iter(models.values())).tokenize(TEXT.read_text().encode(), add_bos=False)
        speeds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in models}
        for _ in range(rounds):
            for name, llm in models.items():
                speeds[name].append(_speeds(llm, text))
                advance()
    finally:
        for llm in models.values():
            llm.close()
    return [
        LayoutResult(
            layout=name,
            file_mb=files[name].stat().st_size / 1e6,
            perplexity=quality[name],
            prefill_tokens_per_s=statistics.median(s[0] for s in speeds[name]),
            decode_tokens_per_s=statistics.median(s[1] for s in speeds[name]),
            agent_step_s=statistics.median(s[2] for s in speeds[name]),
        )
        for name in models
    ]


def perplexity(path: Path, threads: int) -> float:
    """Of the model at `path` on `TEXT` (every position's logits kept: a context of its own)."""
    llm = Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, logits_all=True,
                verbose=False)  # fmt: skip
    try:
        tokens = llm.tokenize(TEXT.read_text().encode(), add_bos=False)
        llm.eval(tokens)
        logits = np.asarray(llm.scores[: len(tokens) - 1], dtype=np.float64)  # row i predicts token i+1
    finally:
        llm.close()
    return _perplexity(logits, tokens)


def _perplexity(logits: np.ndarray, tokens: list[int]) -> float:
    """exp(mean negative log-likelihood of each next token)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    chosen = shifted[np.arange(len(tokens) - 1), tokens[1:]]
    return float(np.exp(np.mean(log_norm - chosen)))


def _speeds(llm: Llama, text: list[int]) -> tuple[float, float, float]:
    """Prefill and decode tokens per second, and the engine's agent-turn step, once each."""
    llm.n_tokens = 0
    started = time.perf_counter()
    for start in range(0, PREFILL_TOKENS, SLICE):
        llm.eval(text[start : start + SLICE])
    prefill = PREFILL_TOKENS / (time.perf_counter() - started)
    started = time.perf_counter()
    for token in text[PREFILL_TOKENS : PREFILL_TOKENS + DECODED_TOKENS]:
        llm.eval([token])
    decode = DECODED_TOKENS / (time.perf_counter() - started)
    return prefill, decode, layout.agent_step(llm)


def markdown(results: list[LayoutResult], threads: int) -> str:
    lines = [
        "| layout | file (MB) | perplexity | prefill (tokens/s) | decode (tokens/s) "
        f"| agent-turn step (s), {threads} thread(s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.layout} | {r.file_mb:.0f} | {r.perplexity:.2f} | {r.prefill_tokens_per_s:.0f} | "
            f"{r.decode_tokens_per_s:.1f} | {r.agent_step_s:.3f} |"
        )
    return "\n".join(lines) + "\n"


def chart(results: list[LayoutResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("perplexity", "perplexity (lower is better)"),
        ("prefill_tokens_per_s", "prefill, tokens/s"),
        ("decode_tokens_per_s", "decode, tokens/s"),
        ("agent_step_s", "agent-turn step, s"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4))
    names = [r.layout for r in results]
    for axis, (field, label) in zip(axes, panels, strict=True):
        values = [asdict(r)[field] for r in results]
        bars = axis.bar(names, values, color=["tab:gray", "tab:green"][: len(names)])
        axis.bar_label(bars, fmt="%.2f" if field in ("perplexity", "agent_step_s") else "%.0f")
        axis.set_title(label)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
