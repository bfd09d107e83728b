"""JudgeRateLimiter without Ray: bucket math on a fake clock, burst, 429 decrease and
recovery, Retry-After, the spend budget and its metric."""

from __future__ import annotations

import logging
import random

import pytest

from repo_ray.config import JudgeBudget, JudgeRateLimit
from reward_actors.judge.limiter import CallOutcome, JudgeRateLimiter, max_window_count


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def limiter(clock, rps=10.0, burst=3, tpm=1e9, factor=0.5, recovery=10.0, budget=None, gauges=None):
    rate = JudgeRateLimit(requests_per_s=rps, burst=burst, tokens_per_min=tpm, backoff_factor=factor,
                          recovery_s=recovery)
    return JudgeRateLimiter(rate, budget, clock=clock, gauges=gauges)


def test_request_bucket_starts_empty_fills_to_burst_and_then_queues_one_slot_per_interval():
    clock = FakeClock()
    lim = limiter(clock)
    assert lim.acquire(10).wait_s == pytest.approx(0.1)  # empty at start: first slot after 1/Q
    clock.t += 60.0  # idle: the bucket holds at most `burst`
    waits = [lim.acquire(10).wait_s for _ in range(6)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])


def test_no_one_second_window_of_send_times_exceeds_rate_plus_burst_under_random_load():
    clock = FakeClock(0.0)
    lim = limiter(clock, rps=20.0, burst=5)
    rng = random.Random(3)
    sends = []
    for _ in range(600):
        clock.t += rng.expovariate(40.0) if rng.random() < 0.9 else rng.uniform(0.5, 2.0)  # load > Q with pauses
        sends.append(clock.t + lim.acquire(1).wait_s)
    assert max_window_count(sends) <= 20 + 5
    assert max_window_count(sends) >= 20  # and the limit is actually used


def test_token_bucket_holds_one_minute_of_tokens_and_refills_per_second():
    clock = FakeClock()
    lim = limiter(clock, rps=1000.0, burst=1000, tpm=600.0)  # 10 tokens/s
    clock.t += 10.0
    waits = [lim.acquire(100).wait_s for _ in range(7)]
    assert waits[:6] == pytest.approx([0.0] * 6)
    assert waits[6] == pytest.approx(10.0)  # 100 tokens at 10/s


def test_a_wait_beyond_max_wait_is_denied_without_reserving_anything():
    clock = FakeClock()
    lim = limiter(clock, rps=10.0, burst=1)
    assert [lim.acquire(1).wait_s for _ in range(5)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    denied = lim.acquire(1, max_wait_s=0.2)
    assert denied.status == "denied" and denied.wait_s == pytest.approx(0.6)
    assert lim.acquire(1).wait_s == pytest.approx(0.6)  # the denied call took no slot
    assert lim.calls_spent == 6


def test_a_429_halves_the_rate_once_per_burst_of_429s_and_it_recovers_linearly():
    clock = FakeClock()
    lim = limiter(clock, rps=10.0, factor=0.5, recovery=10.0)
    lim.report(CallOutcome(100, 429))
    assert lim.state().rate_rps == pytest.approx(5.0)
    lim.report(CallOutcome(100, 429))  # same congestion event
    assert lim.state().rate_rps == pytest.approx(5.0)
    clock.t += 5.0
    assert lim.state().rate_rps == pytest.approx(7.5)
    lim.report(CallOutcome(100, 429))  # a new event: half of the current rate
    assert lim.state().rate_rps == pytest.approx(3.75)
    clock.t += 10.0
    assert lim.state().rate_rps == pytest.approx(10.0)


def test_retry_after_holds_every_caller_back_for_that_long():
    clock = FakeClock()
    lim = limiter(clock, rps=10.0, burst=5)
    clock.t += 10.0
    lim.report(CallOutcome(100, 429, retry_after_s=2.0))
    assert lim.acquire(1).wait_s >= 2.0


def test_reported_usage_corrects_the_token_spend_and_refused_calls_are_not_billed():
    clock = FakeClock()
    lim = limiter(clock)
    lim.acquire(500)
    lim.report(CallOutcome(500, 200, tokens_used=320))
    lim.acquire(500)
    lim.report(CallOutcome(500, 429))
    lim.acquire(500)
    lim.report(CallOutcome(500, None))  # timeout: assume it was spent
    assert lim.tokens_spent == 320 + 0 + 500
    assert lim.calls_spent == 3


def test_released_permit_refunds_the_spend_but_not_its_slot():
    clock = FakeClock()
    lim = limiter(clock, rps=10.0, burst=1)
    first = lim.acquire(50)
    lim.release(50)
    assert (lim.calls_spent, lim.tokens_spent) == (0, 0)
    assert lim.acquire(50).wait_s == pytest.approx(first.wait_s + 0.1)


def test_spent_call_budget_answers_budget_exhausted_logs_once_and_sets_the_metric(caplog):
    clock = FakeClock()
    recorded = []
    lim = limiter(clock, budget=JudgeBudget(max_calls=3), gauges=lambda n, v, t: recorded.append((n, v, dict(t))))
    with caplog.at_level(logging.WARNING, logger="reward_actors.judge.limiter"):
        statuses = [lim.acquire(10).status for _ in range(5)]
    assert statuses == ["granted"] * 3 + ["budget_exhausted"] * 2
    assert ("repo_ray_judge_budget_exhausted", 1.0, {}) in recorded
    assert ("repo_ray_judge_budget_spent", 3.0, {"unit": "calls"}) in recorded
    assert sum("budget exhausted" in r.getMessage() for r in caplog.records) == 1


def test_token_budget_is_never_overspent_by_the_estimate():
    lim = limiter(FakeClock(), budget=JudgeBudget(max_tokens=1000))
    assert [lim.acquire(400).status for _ in range(3)] == ["granted", "granted", "budget_exhausted"]
    assert lim.exhausted and lim.tokens_spent == 800
