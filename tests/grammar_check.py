"""Whether llama.cpp's grammar sampler lets a model write a text: the engine's own GBNF reader
and matcher, run token by token over SmolLM2's vocabulary (loaded alone, without weights)."""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import llama_cpp


class GrammarCheck:
    def __init__(self, model: Path) -> None:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self._model = llama_cpp.llama_model_load_from_file(str(model).encode(), params)
        if not self._model:
            raise RuntimeError(f"cannot load the vocabulary of {model}")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)

    def valid(self, gbnf: str) -> bool:
        """Whether llama.cpp reads `gbnf` (it refuses a broken grammar with no sampler)."""
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
        if sampler:
            llama_cpp.llama_sampler_free(sampler)
        return bool(sampler)

    def accepts(self, gbnf: str, text: str) -> bool:
        """Whether a model held to `gbnf` may write exactly `text` and then stop."""
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
        if not sampler:
            raise ValueError("llama.cpp cannot read the grammar")
        try:
            for token in self._tokens(text):
                if not self._allowed(sampler, token):
                    return False
                llama_cpp.llama_sampler_accept(sampler, token)
            return self._allowed(sampler, llama_cpp.llama_vocab_eos(self._vocab))
        finally:
            llama_cpp.llama_sampler_free(sampler)

    def close(self) -> None:
        llama_cpp.llama_model_free(self._model)

    def _tokens(self, text: str) -> list[int]:
        raw = text.encode()
        room = len(raw) + 8
        tokens = (llama_cpp.llama_token * room)()
        count = llama_cpp.llama_tokenize(self._vocab, raw, len(raw), tokens, room, False, False)
        return list(tokens[:count])

    @staticmethod
    def _allowed(sampler: llama_cpp.llama_sampler_p, token: int) -> bool:
        data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
        llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
        return not math.isinf(data[0].logit)
