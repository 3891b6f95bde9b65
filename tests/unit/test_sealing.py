"""The sealed thinking of reasoning items: opens for its tenant under its key, and for nothing else."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from tether.core.sealing import ReasoningSeal, key_from_secret, new_key, readable
from tether.protocol.items import Reasoning, parse_item

SEAL = ReasoningSeal(new_key())


@given(st.text())
def test_a_blob_opens_to_its_thinking_for_its_tenant(text: str) -> None:
    assert SEAL.open(SEAL.seal(text, "alice"), "alice") == text


def test_nothing_readable_goes_through_and_no_two_blobs_are_alike() -> None:
    text = "The user wants the weather in Paris; call get_weather."
    blob = SEAL.seal(text, "alice")
    raw = base64.urlsafe_b64decode(blob.removeprefix("tether.r1."))
    assert text.encode() not in raw and b"Paris" not in raw
    assert SEAL.seal(text, "alice") != blob  # a fresh nonce each time


def test_a_blob_does_not_open_altered_for_another_tenant_or_under_another_key() -> None:
    blob = SEAL.seal("secret plan", "alice")
    flipped = blob[:-6] + ("A" if blob[-6] != "A" else "B") + blob[-5:]
    assert SEAL.open(flipped, "alice") is None
    assert SEAL.open(blob, "bob") is None
    assert ReasoningSeal(new_key()).open(blob, "alice") is None
    assert SEAL.open("gAAAAABoOpenAIsOwnBlob==", "alice") is None  # another server's
    assert SEAL.open("tether.r1.not-base64!", "alice") is None
    assert SEAL.open("tether.r1.", "alice") is None


def test_an_operator_s_secret_is_the_same_key_in_every_process() -> None:
    one = ReasoningSeal(key_from_secret("x" * 32))
    other = ReasoningSeal(key_from_secret("x" * 32))
    assert other.open(one.seal("thinking", "t"), "t") == "thinking"
    assert key_from_secret("y" * 32) != key_from_secret("x" * 32)


def test_an_item_shows_its_own_content_else_what_its_blob_seals_else_nothing() -> None:
    blob = SEAL.seal("from the blob", "t")

    def item(**fields: object) -> Reasoning:
        parsed = parse_item({"type": "reasoning", "summary": [], **fields}, "input[0]")
        assert isinstance(parsed, Reasoning)
        return parsed

    content = [{"type": "reasoning_text", "text": "from the content"}]
    items = (item(content=content, encrypted_content=blob), item(encrypted_content=blob),
             item(encrypted_content=SEAL.seal("bob's", "bob")), item())  # fmt: skip
    opened = readable(items, SEAL, "t")
    texts = [i.text for i in opened if isinstance(i, Reasoning)]
    assert texts == ["from the content", "from the blob", "", ""]
    assert [i.to_wire() for i in opened] == [i.to_wire() for i in items]  # echoed as it came
