"""Cache diagnostics as pure functions: a request's shape, its extension, and the first reason."""

from __future__ import annotations

from tests.unit.test_upstream_render import WEATHER, generation, user
from tether.core.cache_diagnostics import Shapes, diagnose, extended, shape_of
from tether.protocol.items import Compaction, FunctionCall, Message, TextPart
from tether.protocol.response import Usage

USAGE = Usage(input_tokens=100, cached_tokens=30, output_tokens=5)
REPLY = Message("assistant", (TextPart("output_text", "Done."),), id="msg_out", status="completed")


def test_a_continuation_s_shape_extends_its_parent_s_and_equals_the_whole_computed_again() -> None:
    first = generation(user("Read the README."), instructions="Be brief.", tools=(WEATHER,))
    parent = extended(shape_of(first, first.items, None), [REPLY])
    items = (*first.items, REPLY, user("Now the tests."))
    then = generation(*items, instructions="Be brief.", tools=(WEATHER,))
    assert shape_of(then, then.items[-1:], parent) == shape_of(then, then.items[-1:], None)
    assert diagnose(shape_of(then, (), parent), parent, USAGE).type == "cache_hit"


def test_ids_and_statuses_are_not_part_of_a_shape() -> None:
    """A client that sends its history back without ids still matches what it was given."""
    bare = Message("assistant", (TextPart("output_text", "Done."),))
    with_ids = generation(user("Hi.", "msg_1"), REPLY)
    without = generation(user("Hi."), bare)
    assert shape_of(with_ids, (), None).chain == shape_of(without, (), None).chain


def test_the_first_reason_that_explains_a_miss_is_named() -> None:
    base = generation(user("Task."), instructions="Be brief.", tools=(WEATHER,))
    parent = extended(shape_of(base, base.items, None), [REPLY])
    changes = {
        "model_changed": generation(
            user("Task."), REPLY, instructions="Other.", model="other", tools=(WEATHER,)
        ),
        "tools_changed": generation(user("Task."), REPLY, instructions="Other.", tools=()),
        "input_changed": generation(user("Task."), REPLY, instructions="Other.", tools=(WEATHER,)),
    }
    for reason, request in changes.items():
        diagnostics = diagnose(shape_of(request, (), None), parent, USAGE)
        assert (diagnostics.type, diagnostics.reason) == ("cache_miss", reason)
        assert (diagnostics.reusable, diagnostics.missed) == (30, 70)  # from the turn's usage
    window = (user("Task."), FunctionCall("call_1", "get_weather", "{}"))
    compacted = generation(*window, instructions="Be brief.", tools=(WEATHER,))
    shape = shape_of(compacted, (Compaction("blob"),), None)
    assert diagnose(shape, parent, USAGE).reason == "context_compacted"


def test_shapes_keep_the_latest_per_tenant() -> None:
    shapes = Shapes(kept=2)
    shape = shape_of(generation(user("Hi.")), (), None)
    for response_id in ("resp_1", "resp_2", "resp_3"):
        shapes.put("alice", response_id, shape)
    assert shapes.get("alice", "resp_1") is None and shapes.get("alice", "resp_3") == shape
    assert shapes.get("bob", "resp_3") is None
