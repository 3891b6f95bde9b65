"""D10: a tool output must answer a call made earlier in the chain or in the same input."""

from __future__ import annotations

import pytest

from tether.core.chain import check_call_ids
from tether.protocol.errors import ApiError
from tether.protocol.items import FunctionCall, FunctionCallOutput, OpaqueItem

CALL = FunctionCall(call_id="call_1", name="f", arguments="{}")


def test_an_output_may_answer_a_call_from_the_chain() -> None:
    check_call_ids([CALL], [FunctionCallOutput("call_1", "ok")])


def test_an_output_may_answer_a_call_earlier_in_the_same_input() -> None:
    check_call_ids([], [CALL, FunctionCallOutput("call_1", "ok")])


def test_an_output_before_its_call_is_refused() -> None:
    with pytest.raises(ApiError) as caught:
        check_call_ids([], [FunctionCallOutput("call_1", "ok"), CALL])
    assert caught.value.param == "input" and "call_1" in caught.value.message


def test_custom_tool_outputs_follow_the_same_rule() -> None:
    call = OpaqueItem("custom_tool_call", (), call_id="call_c")
    check_call_ids([call], [OpaqueItem("custom_tool_call_output", (), call_id="call_c")])
    with pytest.raises(ApiError):
        check_call_ids([], [OpaqueItem("custom_tool_call_output", (), call_id="call_c")])
