"""Cluster-wide judge rate limit: a pure token-bucket limiter and the one named Ray actor
that holds it for a run, shared by every judge replica.

Semantics (reservation buckets, so waiting callers never poll):
- Two buckets: requests (capacity `burst`, refill `requests_per_s`) and tokens (capacity one
  minute's worth, refill `tokens_per_min / 60`). `acquire(est_tokens, max_wait_s)` debits
  both at once, possibly below zero, and answers how long the caller must sleep before it
  sends: the debt itself is the queue. In any window of W seconds at most
  `burst + W * requests_per_s` requests are granted, however many callers there are.
  When the wait would exceed `max_wait_s` nothing is debited and the answer is "denied".
- A 429 multiplies the allowed rate by `backoff_factor` (once per second at most, so one
  burst of 429s counts once); the rate climbs back linearly to the full rate over
  `recovery_s`. A 429's `Retry-After` empties the request bucket for that long, so no
  replica sends before it is over.
- The limiter lives in another process, so a permit can reach its caller late (a busy
  replica, a slow round trip); sent late, it would land among the next slots and break the
  window bound. A caller that is more than LATE_PERMIT_S past its slot `release`s it (the
  spend is refunded, the slot is not) and asks again. The request bucket starts empty,
  since start-up, with cold replicas, is when permits are latest.
- Budget (`max_calls`, `max_tokens`): every granted call is spent (estimated tokens, then
  corrected by the reported usage). Once spent, every acquire answers "budget_exhausted",
  a warning is logged once and the gauge `repo_ray_judge_budget_exhausted` is set to 1.
  The spend (`LimiterSpend`) survives a restart of the actor and a resumed run (JudgeLimiterActor).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from repo_ray.config import JudgeBudget, JudgeRateLimit
from repo_ray.telemetry import record, record_actor_start
from repo_ray.types import run_scoped_name

log = logging.getLogger(__name__)

LIMITER_KIND = "judge-limiter"
# The rate never falls below this share of the configured one, however many 429s arrive.
MIN_RATE_FACTOR = 0.05
# 429s closer together than this count as one congestion event.
DECREASE_DEDUP_S = 1.0

# A permit used later than this after its slot is given back and asked for again (at most
# MAX_PERMIT_RETRIES times; then the call goes anyway).
LATE_PERMIT_S = 0.1
MAX_PERMIT_RETRIES = 3

GaugeSink = Callable[[str, float, Mapping[str, str]], None]


@dataclass(frozen=True, slots=True)
class Permit:
    """The limiter's answer: `granted` -> sleep `wait_s`, then send (the slot is reserved);
    `denied` -> the wait would exceed the caller's limit, nothing reserved;
    `budget_exhausted` -> never send again."""

    status: Literal["granted", "denied", "budget_exhausted"]
    wait_s: float = 0.0
    rate_rps: float = 0.0
    # The reserved send time on the wall clock, set by the gate that hands the permit out:
    # a caller that sleeps until it (not `wait_s` after the answer arrived) keeps its slot
    # whatever the round trip to the actor took.
    not_before_epoch: float | None = None

    @property
    def granted(self) -> bool:
        return self.status == "granted"

    def sleep_s(self, now_epoch: float | None = None) -> float:
        """How long to sleep before sending (negative: the slot is already past)."""
        if self.not_before_epoch is None:
            return self.wait_s
        return self.not_before_epoch - (time.time() if now_epoch is None else now_epoch)


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What one granted call came to, reported back to the limiter.

    `http_status` None means no HTTP answer (timeout, connection error). `tokens_used` is the
    API's usage.total_tokens when it answered, else None."""

    est_tokens: int
    http_status: int | None
    tokens_used: int | None = None
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class LimiterState:
    rate_rps: float
    rate_factor: float
    calls_spent: int
    tokens_spent: int
    exhausted: bool
    request_level: float
    token_level: float


@dataclass(frozen=True, slots=True)
class LimiterSpend:
    calls_spent: int = 0
    tokens_spent: int = 0
    exhausted: bool = False


class JudgeRateLimiter:
    """Token buckets on requests/s and tokens/min with burst, 429 backoff and a spend budget.
    Pure: time comes from `clock`, metrics go to `gauges(name, value, tags)`."""

    def __init__(
        self,
        rate: JudgeRateLimit,
        budget: JudgeBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
        gauges: GaugeSink | None = None,
    ) -> None:
        self.rate_cfg = rate
        self.budget_cfg = budget or JudgeBudget()
        self._clock = clock
        self._gauges = gauges
        now = clock()
        self._req_capacity = float(rate.burst)
        self._tok_capacity = float(rate.tokens_per_min)
        # Empty at start: the first calls come from cold replicas whose permits arrive late,
        # and a full burst on top of them would overrun the window bound.
        self._req_level = 0.0
        self._tok_level = self._tok_capacity
        self._last = now
        self._factor0 = 1.0  # rate factor right after the last decrease
        self._decreased_at = -math.inf
        self.calls_spent = 0
        self.tokens_spent = 0
        self.exhausted = False
        self._emit_rate()

    # ------------------------------------------------------------------ rate
    def rate_factor(self, now: float | None = None) -> float:
        """Share of the configured rate allowed now (1 when fully recovered)."""
        now = self._clock() if now is None else now
        if self._factor0 >= 1.0:
            return 1.0
        climbed = (now - self._decreased_at) / self.rate_cfg.recovery_s
        return min(1.0, self._factor0 + (1.0 - self._factor0) * max(0.0, climbed))

    def _refill(self, now: float) -> None:
        dt = max(0.0, now - self._last)
        if dt > 0:
            # trapezoid over the linear recovery: exact within it, a hair off across its end
            f = 0.5 * (self.rate_factor(self._last) + self.rate_factor(now))
            self._req_level = min(self._req_capacity, self._req_level + dt * f * self.rate_cfg.requests_per_s)
            self._tok_level = min(self._tok_capacity, self._tok_level + dt * f * self.rate_cfg.tokens_per_min / 60.0)
        self._last = now

    # ------------------------------------------------------------------ budget
    def _over_budget(self, est_tokens: int) -> bool:
        b = self.budget_cfg
        if b.max_calls is not None and self.calls_spent >= b.max_calls:
            return True
        return b.max_tokens is not None and self.tokens_spent + est_tokens > b.max_tokens

    def _exhaust(self) -> None:
        if not self.exhausted:
            self.exhausted = True
            b = self.budget_cfg
            log.warning(
                "judge budget exhausted (%d calls, %d tokens spent; caps max_calls=%s, max_tokens=%s): "
                "judge results are masked with status budget_exhausted from now on",
                self.calls_spent, self.tokens_spent, b.max_calls, b.max_tokens,
            )
            self._gauge("repo_ray_judge_budget_exhausted", 1.0, {})

    # ------------------------------------------------------------------ API
    def acquire(self, est_tokens: int, max_wait_s: float = math.inf) -> Permit:
        """Reserve one call of about `est_tokens` tokens; see Permit for the answer."""
        if self.exhausted:
            return Permit("budget_exhausted")
        est = max(0, int(est_tokens))
        if self._over_budget(est):
            self._exhaust()
            return Permit("budget_exhausted")
        now = self._clock()
        self._refill(now)
        factor = self.rate_factor(now)
        req_rate = self.rate_cfg.requests_per_s * factor
        tok_rate = self.rate_cfg.tokens_per_min / 60.0 * factor
        tok_cost = min(float(est), self._tok_capacity)  # a call bigger than the bucket still goes, alone
        wait = max(0.0, (1.0 - self._req_level) / req_rate, (tok_cost - self._tok_level) / tok_rate)
        if wait > max_wait_s:
            return Permit("denied", wait, req_rate)
        self._req_level -= 1.0
        self._tok_level -= tok_cost
        self.calls_spent += 1
        self.tokens_spent += est
        self._emit_spend()
        return Permit("granted", wait, req_rate)

    def report(self, outcome: CallOutcome) -> None:
        """Account one finished call: usage corrects the token spend, a 429 slows everyone down."""
        now = self._clock()
        self._refill(now)
        status = outcome.http_status
        if outcome.tokens_used is not None:
            used = max(0, int(outcome.tokens_used))
        elif status is not None and (status == 429 or 400 <= status < 500):
            used = 0  # refused before any work: not billed
        else:
            used = outcome.est_tokens  # unknown (timeout, 5xx): assume it was spent
        delta = used - outcome.est_tokens
        self.tokens_spent = max(0, self.tokens_spent + delta)
        self._tok_level = min(self._tok_capacity, self._tok_level - delta)
        if status == 429:
            self._on_rate_limited(now, outcome.retry_after_s)
        self._emit_spend()

    def release(self, est_tokens: int) -> None:
        """Give back a granted call that was not sent (its holder got the permit too late to
        use its slot). The spend is refunded; the request slot is not: it is in the past, and
        handing it out again now would bunch two calls into one slot."""
        self._refill(self._clock())
        est = max(0, int(est_tokens))
        self.calls_spent = max(0, self.calls_spent - 1)
        self.tokens_spent = max(0, self.tokens_spent - est)
        self._tok_level = min(self._tok_capacity, self._tok_level + min(float(est), self._tok_capacity))
        self._emit_spend()

    def _on_rate_limited(self, now: float, retry_after_s: float | None) -> None:
        if now - self._decreased_at >= DECREASE_DEDUP_S:
            current = self.rate_factor(now)
            self._factor0 = max(MIN_RATE_FACTOR, current * self.rate_cfg.backoff_factor)
            self._decreased_at = now
            self._emit_rate()
        # no burst right after a 429, and none before its Retry-After is over
        pause = max(0.0, retry_after_s or 0.0)
        self._req_level = min(self._req_level, -pause * self.rate_cfg.requests_per_s * self.rate_factor(now))

    def spend(self) -> LimiterSpend:
        """What must survive a restart of the limiter: the budget spent so far."""
        return LimiterSpend(self.calls_spent, self.tokens_spent, self.exhausted)

    def restore_spend(self, spend: LimiterSpend) -> None:
        """Carry a spend over (a restarted limiter, a resumed run): the larger of what is
        known here and `spend`, so restoring never forgets a call."""
        self.calls_spent = max(self.calls_spent, int(spend.calls_spent))
        self.tokens_spent = max(self.tokens_spent, int(spend.tokens_spent))
        if spend.exhausted:
            self._exhaust()
        self._emit_spend()

    def state(self) -> LimiterState:
        now = self._clock()
        self._refill(now)
        f = self.rate_factor(now)
        return LimiterState(self.rate_cfg.requests_per_s * f, f, self.calls_spent, self.tokens_spent, self.exhausted,
                            self._req_level, self._tok_level)

    # ------------------------------------------------------------------ metrics
    def _gauge(self, name: str, value: float, tags: Mapping[str, str]) -> None:
        if self._gauges is not None:
            self._gauges(name, value, tags)

    def _emit_spend(self) -> None:
        self._gauge("repo_ray_judge_budget_spent", float(self.calls_spent), {"unit": "calls"})
        self._gauge("repo_ray_judge_budget_spent", float(self.tokens_spent), {"unit": "tokens"})

    def _emit_rate(self) -> None:
        self._gauge("repo_ray_judge_rate", self.rate_cfg.requests_per_s * self.rate_factor(), {})


# ---------------------------------------------------------------------------- measuring it
def max_window_count(times: list[float], width_s: float = 1.0) -> int:
    """The most arrivals in any window [t, t + width) (the limit is burst + width * rate)."""
    ts = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - width_s:
            j += 1
        best = max(best, i - j + 1)
    return best


def arrival_rate(times: list[float], since: float | None = None) -> float:
    """Arrivals per second, (n - 1) / (last - first), over the arrivals at or after `since`."""
    ts = sorted(t for t in times if since is None or t >= since)
    if len(ts) < 2 or ts[-1] <= ts[0]:
        return 0.0
    return (len(ts) - 1) / (ts[-1] - ts[0])


# ---------------------------------------------------------------------------- Ray actor
def ray_gauges(name: str, value: float, tags: Mapping[str, str]) -> None:
    record(name, value, **tags)


class JudgeLimiterActor:
    """Thin Ray actor around JudgeRateLimiter (one per run; every judge replica calls it).
    Made remote, named limiter_name(run_id), by repo_ray/pipeline/placement.py.

    Restartable without forgetting the budget: every change of the spend is written to the
    cluster's key-value store (GCS) under `spend_key` (unique per created limiter, so a new
    run never inherits an old spend); Ray re-runs __init__ with the same arguments after a
    crash and the spend is read back. The driver also stores `spend()` in each checkpoint and
    `restore_spend`s it on --resume (the cluster, and its store, may be new)."""

    def __init__(self, rate: dict[str, Any], budget: dict[str, Any], spend_key: str | None = None) -> None:
        self._limiter = JudgeRateLimiter(JudgeRateLimit(**rate), JudgeBudget(**budget), gauges=ray_gauges)
        self._key = spend_key
        ray_gauges("repo_ray_judge_budget_exhausted", 0.0, {})
        saved = _kv_get(spend_key)
        if saved is not None:
            self._limiter.restore_spend(saved)
        record_actor_start(LIMITER_KIND.replace("-", "_"))

    def _persist(self) -> None:
        _kv_put(self._key, self._limiter.spend())

    def acquire(self, est_tokens: int, max_wait_s: float = math.inf) -> Permit:
        permit = self._limiter.acquire(est_tokens, max_wait_s)
        if permit.granted:
            self._persist()
            permit = replace(permit, not_before_epoch=time.time() + permit.wait_s)
        return permit

    def report(self, outcome: CallOutcome) -> None:
        self._limiter.report(outcome)
        self._persist()

    def release(self, est_tokens: int) -> None:
        self._limiter.release(est_tokens)
        self._persist()

    def state(self) -> LimiterState:
        return self._limiter.state()

    def spend(self) -> LimiterSpend:
        return self._limiter.spend()

    def restore_spend(self, spend: LimiterSpend) -> LimiterSpend:
        self._limiter.restore_spend(spend)
        self._persist()
        return self._limiter.spend()

    def forget_spend(self) -> None:
        """The run is over: drop the persisted copy (the checkpoint keeps its own)."""
        if self._key is not None:
            delete_persisted_spend(self._key)

    def ping(self) -> bool:
        return True


_KV_NAMESPACE = "repo_ray_judge_limiter"


def _kv_put(key: str | None, spend: LimiterSpend) -> None:
    if key is None:
        return
    try:
        from ray.experimental.internal_kv import _internal_kv_put

        _internal_kv_put(key, json.dumps(asdict(spend)), overwrite=True, namespace=_KV_NAMESPACE)
    except Exception as err:  # noqa: BLE001 - the checkpoint still holds the spend of the last step
        log.warning("judge limiter: spend not persisted (%s)", type(err).__name__)


def _kv_get(key: str | None) -> LimiterSpend | None:
    if key is None:
        return None
    try:
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(key, namespace=_KV_NAMESPACE)
    except Exception:  # noqa: BLE001 - no store: start from the driver's re-seed
        return None
    return None if raw is None else LimiterSpend(**json.loads(raw))


def delete_persisted_spend(key: str) -> None:
    """Forget a finished run's persisted spend (the driver, at the end of the run)."""
    try:
        from ray.experimental.internal_kv import _internal_kv_del

        _internal_kv_del(key, namespace=_KV_NAMESPACE)
    except Exception:  # noqa: BLE001 - nothing to clean
        pass


def limiter_name(run_id: str) -> str:
    return run_scoped_name(LIMITER_KIND, run_id)

