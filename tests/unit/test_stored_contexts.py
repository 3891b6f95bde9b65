"""The parsed histories a process holds: bounded in bytes, least recently used first, per tenant."""

from __future__ import annotations

from tether.core.stored_contexts import StoredContext, StoredContexts


def held(size: int, tenant: str = "default") -> StoredContext:
    return StoredContext(tenant, (), ("r",), size)


def test_histories_are_held_up_to_the_bytes_and_the_oldest_go_first() -> None:
    contexts = StoredContexts(max_bytes=300)
    for name in ("a", "b", "c"):
        contexts.put(name, held(100))
    assert contexts.bytes == 300 and len(contexts) == 3  # at the bound
    assert contexts.get("a", "default") is not None  # a is now the most recent
    contexts.put("d", held(1))  # one byte past it: b, the least recently used, goes
    assert contexts.get("b", "default") is None
    assert [contexts.get(n, "default") is not None for n in "acd"] == [True, True, True]
    assert contexts.bytes == 201


def test_one_larger_than_the_whole_bound_is_not_held() -> None:
    contexts = StoredContexts(max_bytes=100)
    contexts.put("a", held(50))
    contexts.put("big", held(101))
    assert contexts.get("big", "default") is None and contexts.get("a", "default") is not None


def test_another_tenant_never_gets_a_history_and_forget_frees_its_bytes() -> None:
    contexts = StoredContexts(max_bytes=1000)
    contexts.put("a", held(10, tenant="alice"))
    assert contexts.get("a", "bob") is None and contexts.get("a", "alice") is not None
    contexts.forget("a")
    assert contexts.bytes == 0 and contexts.get("a", "alice") is None
