"""Warm-ups answered before their prefill (D2): a continuation waits for the prefill and is told
when it failed."""

from __future__ import annotations

import asyncio

import pytest

from tether.backends.base import BackendError, Cancellation
from tether.core.warm_ups import WarmUps
from tether.protocol.response import Usage

USAGE = Usage(input_tokens=100, cached_tokens=0, output_tokens=0)


def test_a_continuation_waits_until_the_prefill_is_over() -> None:
    async def scenario() -> list[str]:
        warm_ups, order, release = WarmUps(), [], asyncio.Event()

        async def prefill() -> Usage:
            await release.wait()
            order.append("prefilled")
            return USAGE

        running = asyncio.create_task(warm_ups.prefill("resp_w", prefill(), Cancellation()))
        await asyncio.sleep(0)
        assert warm_ups.waiter("resp_other") is None  # nothing to wait for: no task, no cost
        wait = warm_ups.waiter("resp_w")
        assert wait is not None
        waiting = asyncio.create_task(wait())  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        order.append("still waiting" if not waiting.done() else "did not wait")
        assert len(warm_ups) == 1
        release.set()
        await waiting
        order.append("continued")
        assert await running == USAGE and len(warm_ups) == 0
        return order

    assert asyncio.run(scenario()) == ["still waiting", "prefilled", "continued"]


def test_a_failed_prefill_is_reported_to_the_continuation_once() -> None:
    async def scenario() -> None:
        warm_ups = WarmUps()

        async def prefill() -> Usage:
            raise BackendError("engine gone", public="The upstream engine is not reachable.")

        assert await warm_ups.prefill("resp_w", prefill(), Cancellation()) is None
        with pytest.raises(BackendError) as caught:
            await warm_ups.ready("resp_w")
        assert caught.value.public == (
            "The warm-up (generate: false) this response continues failed: "
            "The upstream engine is not reachable."
        )
        await warm_ups.ready("resp_w")  # told once; a second continuation just starts cold
        await warm_ups.ready("resp_other")  # unknown ids have nothing to wait for

    asyncio.run(scenario())


def test_only_the_latest_failures_are_kept() -> None:
    async def scenario() -> None:
        warm_ups = WarmUps(failures_kept=2)

        async def failing() -> Usage:
            raise BackendError("no")

        for n in range(3):
            await warm_ups.prefill(f"resp_{n}", failing(), Cancellation())
        await warm_ups.ready("resp_0")  # forgotten
        with pytest.raises(BackendError):
            await warm_ups.ready("resp_2")

    asyncio.run(scenario())


def test_cancel_all_stops_running_prefills_without_calling_them_failed() -> None:
    async def scenario() -> None:
        warm_ups, cancel = WarmUps(), Cancellation()

        async def prefill() -> Usage:
            while not cancel.is_set:
                await asyncio.sleep(0.001)
            return USAGE

        running = asyncio.create_task(warm_ups.prefill("resp_w", prefill(), cancel))
        await asyncio.sleep(0)
        warm_ups.cancel_all()
        assert await running is None and cancel.reason == "interrupted"
        await warm_ups.ready("resp_w")

    asyncio.run(scenario())
