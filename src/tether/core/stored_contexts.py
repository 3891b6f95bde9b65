"""The parsed histories of stored responses this process made or read, by id, bounded in bytes.

Continuing a stored response over HTTP would otherwise read and parse its whole chain from the
store on every turn. With the history here, a continuation only asks the store whether every
link of the chain is still there and the tenant's (`Store.intact`: a response deleted since, on
any replica, breaks the chain as it must), then adds its new input. A history is kept when its
response settles (`store: true`, chainable) or is read from the store; the least recently used
go first once `max_bytes` is passed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from tether.protocol.items import Item


@dataclass(frozen=True)
class StoredContext:
    tenant: str
    items: tuple[Item, ...]  # inputs and outputs of the whole chain, in order
    lineage: tuple[str, ...]  # the chain's response ids, root first, ending with this one
    size: int  # bytes of its items as JSON: an estimate of what it holds


class StoredContexts:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._by_id: OrderedDict[str, StoredContext] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, response_id: str, tenant: str) -> StoredContext | None:
        context = self._by_id.get(response_id)
        if context is None or context.tenant != tenant:
            return None
        self._by_id.move_to_end(response_id)
        return context

    def put(self, response_id: str, context: StoredContext) -> None:
        if context.size > self.max_bytes:
            return
        self.forget(response_id)
        self._by_id[response_id] = context
        self.bytes += context.size
        while self.bytes > self.max_bytes:
            _, evicted = self._by_id.popitem(last=False)
            self.bytes -= evicted.size

    def forget(self, response_id: str) -> None:
        gone = self._by_id.pop(response_id, None)
        if gone is not None:
            self.bytes -= gone.size
