"""Content addresses of conversations, so a request finds what the engine holds by what it says.

A conversation is a chain of blocks (the system block, then one per rendered item). Its address
after k blocks is a digest of those k blocks, chained, and seeded with the cache scope: two
tenants with the same prompt never share an address, so neither can time the other's prompts.

A token record keeps a `Mark` per block it covers: the address, and where that block ends in the
record's tokens. A request computes the addresses of its own blocks and takes the record that
shares the longest chain; its prompt then starts with that record's tokens (the model's own, as
sampled) instead of a fresh rendering of the same text, which may tokenise differently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from hashlib import blake2b

import numpy as np

from tether.backends.local.chatml import Block

Mark = tuple[bytes, int]  # a block chain's address, and the token offset where its last block ends

_DIGEST_BYTES = 16


def addresses(scope: str, chain: Iterable[Block]) -> list[bytes]:
    """The address after each block of `chain`, in order."""
    digest = blake2b(scope.encode(), digest_size=_DIGEST_BYTES).digest()
    result = []
    for block in chain:
        digest = following(digest, block)
        result.append(digest)
    return result


def following(digest: bytes, block: Block) -> bytes:
    """The address of a chain that continues the one at `digest` with `block`."""
    h = blake2b(digest, digest_size=_DIGEST_BYTES)
    h.update(block.role.encode())
    h.update(b"\0")
    h.update(block.content.encode())
    return h.digest()


def common_prefix(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    """How many leading tokens `a` and `b` share (vectorised: a context holds thousands)."""
    n = min(len(a), len(b))
    differ = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(differ[0]) if differ.size else n
