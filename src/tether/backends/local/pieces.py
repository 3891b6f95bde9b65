"""A token's bytes, however many.

llama-cpp-python's `detokenize` reads each token into a 32-byte buffer and silently drops a
token that does not fit; vocabularies have longer ones (runs of spaces or code in large ones).
llama.cpp says how much room a token needs when it is short of it.
"""

from __future__ import annotations

import ctypes

import llama_cpp

_ROOM = 64  # bytes tried first: nearly every token fits


def token_bytes(vocab: llama_cpp.llama_vocab_p, token: int, special: bool) -> bytes:
    """`token`'s bytes; with `special`, a special token's text too (else it has none)."""
    room = _ROOM
    while True:
        buffer = ctypes.create_string_buffer(room)
        length = llama_cpp.llama_token_to_piece(vocab, token, buffer, room, 0, special)
        if length >= 0:
            return buffer.raw[:length]
        room = -length  # what it needs
