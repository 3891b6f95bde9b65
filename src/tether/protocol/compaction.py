"""The `encrypted_content` of Tether's own `compaction` items (spec §8.7, §10.9).

The blob is the compacted items themselves, versioned and base64url-encoded. It is not secret
(the client could send the same items in the clear); it only has to round-trip through the client.
"""

from __future__ import annotations

import base64
import binascii

import orjson

from tether.protocol.errors import invalid_request
from tether.protocol.items import Item, parse_item

_PREFIX = "tether.c1."


def encode(items: tuple[Item, ...]) -> str:
    payload = orjson.dumps([item.to_wire() for item in items])
    return _PREFIX + base64.urlsafe_b64encode(payload).decode("ascii")


def decode(blob: str) -> tuple[Item, ...]:
    """The items a compaction stands for; a blob Tether did not make is a 400 (§6.6)."""
    if not blob.startswith(_PREFIX):
        raise invalid_request("A compaction item's content was not produced by this server.", "input")
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(blob[len(_PREFIX) :]))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise invalid_request("A compaction item's content is corrupt.", "input") from None
    if not isinstance(raw, list):
        raise invalid_request("A compaction item's content is corrupt.", "input")
    return tuple(parse_item(entry, f"compaction[{i}]") for i, entry in enumerate(raw))
