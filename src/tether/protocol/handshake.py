"""The headers of Tether's WebSocket upgrade response (spec §3.3)."""

from __future__ import annotations


def headers(max_message_bytes: int, model: str | None) -> list[tuple[bytes, bytes]]:
    """What Codex reads from the upgrade response, where Tether has a true answer:

    - `x-codex-websocket-max-message-bytes`: the largest message Tether accepts (larger: 1009);
    - `x-reasoning-included`: the usage Tether reports already covers past reasoning items (what
      of them the model is shown is in its input tokens), so the client must not add its own
      estimate;
    - `openai-model`: the model that serves this connection, when the server serves one by one
      name (`model`; None: not sent). Codex takes a name other than the one it asked for as a
      reroute and warns of it, in words about flagged accounts.
    """
    pairs = [
        ("x-codex-websocket-max-message-bytes", str(max_message_bytes)),
        ("x-reasoning-included", "true"),
    ]
    if model is not None:
        pairs.append(("openai-model", model))
    return [(name.encode(), value.encode()) for name, value in pairs]
