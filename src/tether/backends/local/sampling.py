"""How each next token of an answer is chosen: one llama.cpp sampler chain per answer.

The API exposes temperature and top_p only, so the chain is: the tool call's grammar when the
call is forced, then greedy at temperature 0, else top-p, temperature and a random draw. Greedy
is what the determinism rules of `batches.py` are about; a positive temperature is random anyway.
"""

from __future__ import annotations

import llama_cpp


class Sampler:
    """Close with `close()`: the chain lives in llama.cpp's memory."""

    def __init__(
        self, vocab: llama_cpp.llama_vocab_p, temperature: float, top_p: float, grammar: str | None
    ) -> None:
        self._chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        try:
            if grammar is not None:
                self._add(llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root"))
            if temperature == 0:
                self._add(llama_cpp.llama_sampler_init_greedy())
            else:
                self._add(llama_cpp.llama_sampler_init_top_p(top_p, 1))
                self._add(llama_cpp.llama_sampler_init_temp(temperature))
                self._add(llama_cpp.llama_sampler_init_dist(llama_cpp.LLAMA_DEFAULT_SEED))
        except Exception:
            self.close()
            raise

    def next(self, ctx: llama_cpp.llama_context_p, index: int) -> int:
        """The token chosen from the logits of batch row `index`, accepted by the chain (so a
        grammar moves on past it)."""
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self._chain)

    def _add(self, sampler: llama_cpp.llama_sampler_p | None) -> None:
        if not sampler:
            raise ValueError("llama.cpp refused the sampler (an invalid grammar?)")
        llama_cpp.llama_sampler_chain_add(self._chain, sampler)
