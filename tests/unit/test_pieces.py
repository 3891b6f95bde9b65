"""A token's bytes come out whole however long it is (llama-cpp-python's `detokenize` drops a
token longer than 32 bytes without a word)."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
from llama_cpp import Llama

from tests.tiny_gguf import TinyModel, write
from tether.backends.local.pieces import token_bytes


def test_long_and_special_tokens(tmp_path: Path) -> None:
    long = "a token of a hundred bytes, as code-trained vocabularies have: " + "x" * 37
    model = TinyModel(specials=("<|end|>",), eos="<|end|>", scripts=(("\n", long),))
    llm = Llama(str(write(model, tmp_path / "tiny.gguf")), vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    try:
        [token] = [
            t
            for t in range(llm.n_vocab())
            if llama_cpp.llama_vocab_get_text(vocab, t).startswith(b"a\xc4\xa0token")
        ]
        assert len(long.encode()) == 100 and token_bytes(vocab, token, special=False) == long.encode()
        end = llm.token_eos()
        assert (token_bytes(vocab, end, special=False), token_bytes(vocab, end, special=True)) == (
            b"",
            b"<|end|>",
        )
    finally:
        llm.close()
