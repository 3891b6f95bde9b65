"""A tiny GGUF model that llama.cpp loads and that writes scripted answers, for the chat templates
and tool-call formats of model families no small real model ships for (Mistral's `[TOOL_CALLS]`,
Phi-4, Llama 3, Qwen's `<tool_call>`).

It is a bigram model: one `llama` layer whose attention and FFN add nothing to the residual
stream, so the next token depends on the current token alone. Each token's embedding is a one-hot
row and `output.weight` gives its scripted successor a logit of `_LOGIT` (every other token 0):
even at temperature 1 the model follows the script with probability about 1 - 1e-15 per token,
and a grammar can still force any other token, all of them tied at 0.

The vocabulary is GPT-2's byte-level one (256 tokens, one per byte, so any text tokenizes byte by
byte), the special and user-defined tokens, then "words": longer pieces of the scripts, which
prompts never tokenize to (there are no merges) but which the model writes, so one answer spans
several tokens as a real model's does."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

# The successor's logit; the rest of the vocabulary (a few hundred tokens) shares e^-40 of the mass.
_LOGIT = 40.0
_RMS_EPS = 1e-5
_HEADS = 4
_FF = 64
_CONTEXT = 4096


@dataclass(frozen=True)
class TinyModel:
    """`specials` are control tokens (llama.cpp matches them in a prompt only when asked to parse
    specials and shows them only when asked to); `user_defined` ones, like Qwen's `<tool_call>`,
    are always matched and shown. Each script is `(trigger, piece, ...)`: after the token `trigger`
    the model writes the pieces in turn, then `eos`; any token no script continues is followed by
    `eos`. A piece is a token: a one-byte character is its byte, a special or user-defined token
    is itself, any other text a word token. Without `bos`, llama.cpp takes token 11 (the byte
    `\\v`) as BOS, which a template's `bos_token` would write: give `bos` to such templates."""

    specials: tuple[str, ...]
    eos: str
    scripts: tuple[tuple[str, ...], ...]
    user_defined: tuple[str, ...] = ()
    bos: str | None = None
    chat_template: str | None = None


def write(model: TinyModel, path: Path) -> Path:
    """Write `model` to `path` (about 2 MB, in a few milliseconds) and return `path`."""
    tokens, types = _vocabulary(model)
    ids = {text: token for token, text in enumerate(tokens)}
    eos = ids[model.eos]
    successors = _successors(model, ids)
    # One-hot embeddings need n_embd >= n_vocab; a multiple of 64 keeps the head size even (RoPE).
    n_vocab, n_embd = len(tokens), -(-len(tokens) // 64) * 64
    head = n_embd // _HEADS

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(_CONTEXT)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(1)
    writer.add_feed_forward_length(_FF)
    writer.add_head_count(_HEADS)
    writer.add_head_count_kv(1)  # the least K and V to store: attention is unused anyway
    writer.add_layer_norm_rms_eps(_RMS_EPS)
    writer.add_rope_dimension_count(head)
    writer.add_tokenizer_model("gpt2")
    # Not "default": that one makes llama_detokenize "clean up" spaces (" ," -> ","), which would
    # change the scripted text. Nor "llama-bpe": that one adds a BOS of its own and takes a prompt's
    # word whole when it is in the vocabulary, where prompts must stay byte by byte.
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # llama.cpp refuses a gpt2 vocabulary without merges, and gguf writes no empty array. A merge
    # of two 2-character symbols never applies: without a merge of single characters, no symbol
    # of a prompt ever grows past one character.
    writer.add_token_merges([f"{_BYTES[0x20] * 2} {_BYTES[0x20] * 2}"])
    writer.add_eos_token_id(eos)
    if model.bos is not None:
        writer.add_bos_token_id(ids[model.bos])
    writer.add_add_bos_token(False)
    if model.chat_template is not None:
        writer.add_chat_template(model.chat_template)

    embedding = np.eye(n_vocab, n_embd, dtype=np.float32)
    # RMSNorm turns a one-hot row into one value of 1 / sqrt(1 / n_embd + eps).
    output = np.zeros((n_vocab, n_embd), dtype=np.float32)
    for token in range(n_vocab):
        output[successors.get(token, eos), token] = _LOGIT * math.sqrt(1 / n_embd + _RMS_EPS)
    ones = np.ones(n_embd, dtype=np.float32)

    def zeros(rows: int, columns: int) -> npt.NDArray[np.float32]:
        return np.zeros((rows, columns), dtype=np.float32)

    # numpy's (rows, columns) is ggml's (ne1, ne0): each weight is (outputs, inputs).
    writer.add_tensor("token_embd.weight", embedding)
    writer.add_tensor("blk.0.attn_norm.weight", ones)
    writer.add_tensor("blk.0.attn_q.weight", zeros(n_embd, n_embd))
    writer.add_tensor("blk.0.attn_k.weight", zeros(head, n_embd))
    writer.add_tensor("blk.0.attn_v.weight", zeros(head, n_embd))
    writer.add_tensor("blk.0.attn_output.weight", zeros(n_embd, n_embd))
    writer.add_tensor("blk.0.ffn_norm.weight", ones)
    writer.add_tensor("blk.0.ffn_gate.weight", zeros(_FF, n_embd))
    writer.add_tensor("blk.0.ffn_up.weight", zeros(_FF, n_embd))
    writer.add_tensor("blk.0.ffn_down.weight", zeros(n_embd, _FF))
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", output)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _byte_chars() -> list[str]:
    """GPT-2's byte-to-unicode map: printable bytes stand for themselves, the rest for characters
    from U+0100 on, so that every token text is printable (a space is "Ġ", a newline "Ċ")."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    others = iter(range(0x100, 0x200))
    return [chr(byte) if byte in printable else chr(next(others)) for byte in range(256)]


_BYTES = _byte_chars()


def _text(piece: str, marked: set[str]) -> str:
    """The token text of a piece: llama.cpp shows special and user-defined tokens as they are,
    and decodes any other token from the byte-to-unicode map."""
    if not piece:
        raise ValueError("a piece of a script cannot be empty")
    return piece if piece in marked else "".join(_BYTES[byte] for byte in piece.encode())


def _vocabulary(model: TinyModel) -> tuple[list[str], list[gguf.TokenType]]:
    """Token texts and types: the 256 bytes (token i is byte i), specials, user-defined, words."""
    marked = {*model.specials, *model.user_defined}
    if model.eos not in model.specials or (model.bos is not None and model.bos not in model.specials):
        raise ValueError("eos and bos must be among the specials")
    tokens = list(_BYTES)
    types = [gguf.TokenType.NORMAL] * len(tokens)
    for texts, kind in (
        (model.specials, gguf.TokenType.CONTROL),
        (model.user_defined, gguf.TokenType.USER_DEFINED),
    ):
        for text in texts:
            if text in tokens:
                raise ValueError(f"{text!r} is in the vocabulary twice")
            tokens.append(text)
            types.append(kind)
    known = set(tokens)
    for script in model.scripts:
        for text in (_text(piece, marked) for piece in script):
            if text not in known:
                known.add(text)
                tokens.append(text)
                types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _successors(model: TinyModel, ids: dict[str, int]) -> dict[int, int]:
    marked = {*model.specials, *model.user_defined}
    successors: dict[int, int] = {}
    for script in model.scripts:
        if script[0] not in marked and len(script[0].encode()) > 1:
            raise ValueError(f"the trigger {script[0]!r} is a word, and no prompt ends in a word")
        for piece, following in pairwise((*script, model.eos)):
            token, successor = ids[_text(piece, marked)], ids[_text(following, marked)]
            if successors.setdefault(token, successor) != successor:
                raise ValueError(f"{piece!r} would be followed by two tokens: vary one's spelling")
    return successors
