"""Chain resolution (§4.1.2 phase 2, §8.3) and D10: a tool output must answer a call made
earlier in the chain or in the same input."""

from __future__ import annotations

import asyncio

import pytest

from tether.core import chain
from tether.core.chain import Context, check_call_ids
from tether.protocol import compaction, errors
from tether.protocol.errors import ApiError
from tether.protocol.items import (
    Compaction,
    FunctionCall,
    FunctionCallOutput,
    Item,
    ItemReference,
    Message,
    TextPart,
)

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
    call = FunctionCall("call_c", "apply_patch", "*** Begin Patch", custom=True)
    check_call_ids([call], [FunctionCallOutput("call_c", "done", custom=True)])
    with pytest.raises(ApiError):
        check_call_ids([], [FunctionCallOutput("call_c", "done", custom=True)])


# --- resolution (§4.1.2 phase 2, §8.3) -------------------------------------------------------------


class History:
    """A parent's chain and the items that can be referenced, as a cache or the store answers."""

    def __init__(self, chains: dict[str, tuple[Item, ...]], items: dict[str, Item]) -> None:
        self.chains, self.items = chains, items

    async def items_of(self, response_id: str) -> tuple[Item, ...]:
        if response_id not in self.chains:
            raise errors.previous_response_not_found(response_id)
        return self.chains[response_id]

    async def find_item(self, item_id: str) -> Item | None:
        return self.items.get(item_id)


USER = Message("user", (TextPart("input_text", "Hi"),), id="msg_u")
HISTORY = History({"resp_1": (USER, CALL)}, {"msg_u": USER})


def resolve(parent: str | None, *new_input: Item) -> Context:
    return asyncio.run(chain.resolve(parent, new_input, HISTORY))


def test_the_context_is_the_parents_chain_then_the_new_input_with_ids() -> None:
    """§10.7: every stored input item carries an id; the client's own ids are kept."""
    context = resolve("resp_1", FunctionCallOutput("call_1", "ok"), USER)
    assert context.history == (USER, CALL)
    (output, user) = context.input
    assert isinstance(output, FunctionCallOutput) and output.id is not None and output.id.startswith("fco_")
    assert user.id == "msg_u"


def test_an_unknown_parent_is_not_found() -> None:
    """§8.3, D1."""
    with pytest.raises(ApiError) as caught:
        resolve("resp_missing", USER)
    assert caught.value.code == "previous_response_not_found" and caught.value.status == 400


def test_an_item_reference_is_replaced_by_the_item_and_an_unknown_one_is_refused() -> None:
    assert resolve(None, ItemReference("msg_u")).input == (USER,)
    with pytest.raises(ApiError, match="Item with id 'msg_nope' not found"):
        resolve(None, ItemReference("msg_nope"))


def test_a_compaction_expands_to_the_items_it_stands_for() -> None:
    """§8.7: the window's items come back, so a tool output may answer a call inside it."""
    window = Compaction(compaction.encode((USER, CALL)))
    context = resolve(None, window, FunctionCallOutput("call_1", "ok"))
    assert [type(item).__name__ for item in context.input] == [
        "Message",
        "FunctionCall",
        "FunctionCallOutput",
    ]


def test_a_tool_output_without_its_call_in_the_chain_is_refused() -> None:
    """D10, checked against the resolved chain."""
    with pytest.raises(ApiError) as caught:
        resolve(None, FunctionCallOutput("call_1", "ok"))
    assert caught.value.code == "invalid_request_error" and "call_1" in caught.value.message
