"""The `encrypted_content` of reasoning items (spec §6.5): the model's thinking, sealed.

A stateless client (`store: false`, Codex) asks for it with `include:
["reasoning.encrypted_content"]` and sends the item back with the rest of its input; opened, the
thinking is shown to the model again exactly as it would be from a stored response, so an engine's
prefix cache stays hot. The blob is AES-256-GCM over the text, bound to the tenant it was made
for: it reads as nothing to the client, and one that was altered, made under another key (another
deployment, a rotated key) or for another tenant does not open. Such a blob is dropped (§6.6), not
refused: the model goes on without that thinking, and a client whose key was rotated keeps working.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tether.protocol.items import Item, Reasoning

KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12  # GCM's standard nonce; random per blob
_PREFIX = "tether.r1."  # versions the format, and tells Tether's blobs from other servers'
_INFO = b"tether reasoning v1"  # HKDF's context: this key seals nothing else


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def key_from_secret(secret: str) -> bytes:
    """The key an operator's secret (`--reasoning-key`) stands for."""
    return HKDF(SHA256(), KEY_BYTES, salt=None, info=_INFO).derive(secret.encode())


class ReasoningSeal:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, text: str, tenant: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, text.encode(), tenant.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, blob: str, tenant: str) -> str | None:
        """The thinking `blob` seals for `tenant`; None when it does not open."""
        if not blob.startswith(_PREFIX):
            return None
        try:
            raw = base64.urlsafe_b64decode(blob[len(_PREFIX) :])
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], tenant.encode())
            return plain.decode()
        except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError):
            return None


def readable(items: tuple[Item, ...], seal: ReasoningSeal, tenant: str) -> tuple[Item, ...]:
    """`items`, each reasoning item whose thinking is only in its blob given the text the blob
    seals (one with readable content says what that content says; it is the client's input)."""
    return tuple(_readable(item, seal, tenant) for item in items)


def _readable(item: Item, seal: ReasoningSeal, tenant: str) -> Item:
    if not isinstance(item, Reasoning) or item.text or item.encrypted_content is None:
        return item
    return replace(item, text=seal.open(item.encrypted_content, tenant) or "")
