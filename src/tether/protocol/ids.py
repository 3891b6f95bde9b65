"""Identifiers with OpenAI's prefixes (spec §6.4)."""

from __future__ import annotations

import secrets
import string

_ALNUM = string.ascii_letters + string.digits


def response_id() -> str:
    return "resp_" + secrets.token_hex(24)


def message_id() -> str:
    return "msg_" + secrets.token_hex(24)


def function_call_id() -> str:
    return "fc_" + secrets.token_hex(24)


def custom_tool_call_id() -> str:
    return "ctc_" + secrets.token_hex(24)


def call_id() -> str:
    """The value a client echoes back in `function_call_output`: 24 alphanumerics, as OpenAI's."""
    return "call_" + "".join(secrets.choice(_ALNUM) for _ in range(24))


def item_id(item_type: str) -> str:
    """An id for an input item that arrived without one."""
    prefix = {
        "message": "msg_",
        "function_call": "fc_",
        "function_call_output": "fco_",
        "custom_tool_call": "ctc_",
        "compaction": "cmp_",
        "reasoning": "rs_",
    }.get(item_type, "item_")
    return prefix + secrets.token_hex(24)


def steer_id() -> str:
    """OpenAI's: 32 hexadecimal characters after the prefix."""
    return "steer_" + secrets.token_hex(16)


def reasoning_id() -> str:
    return "rs_" + secrets.token_hex(24)


def compaction_id() -> str:
    return "cmp_" + secrets.token_hex(24)


def request_id() -> str:
    return "req_" + secrets.token_hex(16)
