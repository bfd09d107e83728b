"""The pool's per-source deadline returns on time even when the source ignores cancellation
(a Serve DeploymentResponse stuck in its router's retry loop does, until the loop wakes)."""

from __future__ import annotations

import asyncio
import time

import pytest

from reward_actors.pool import _within


async def _stubborn(seconds: float) -> str:
    """Keeps running through cancellation until `seconds` have passed."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        try:
            await asyncio.sleep(end - time.perf_counter())
        except asyncio.CancelledError:
            continue
    return "late"


def test_deadline_returns_on_time_although_the_call_ignores_cancellation():
    async def run():
        t0 = time.perf_counter()
        with pytest.raises(TimeoutError):
            await _within(_stubborn(1.5), t0 + 0.2)
        elapsed = time.perf_counter() - t0
        # asyncio.wait_for would have waited for the call to unwind (1.5 s)
        assert elapsed < 1.0
        return elapsed

    asyncio.run(run())


def test_an_answer_within_the_deadline_is_returned_and_errors_propagate():
    async def fails():
        raise ValueError("boom")

    async def run():
        assert await _within(_stubborn(0.01), time.perf_counter() + 2.0) == "late"
        with pytest.raises(ValueError, match="boom"):
            await _within(fails(), time.perf_counter() + 2.0)

    asyncio.run(run())
