"""The RewardPool: per trajectory, RF, RJ and RM asked concurrently, one `RewardResult` back.

`RewardPool` is an async Ray actor (made remote, like `RuleChecker`, in
repo_ray/pipeline/placement.py); `pool.score.remote(trajectory, scenario)` returns an
ObjectRef that resolves when that sample's sources have all answered (or timed out), so
the driver consumes rewards as they finish with `ray.wait`. RM calls are micro-batched
(the scorer is a batched model); rule checks go round-robin to `RuleChecker` actors; the
judge goes through the Serve deployment handle. A source that times out or fails yields a
`SourceResult` with that status, never a 0; `combine_sources` applies the failure policy.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import ray

from repo_ray.config import RewardConfig
from repo_ray.domain.scenario import Scenario
from repo_ray.telemetry import record
from repo_ray.types import SOURCE_JUDGE, SOURCE_RM, SOURCE_RULES, RewardResult, SourceResult, SourceStatus, Trajectory
from reward_actors.combine import combine_sources

log = logging.getLogger(__name__)

# Actor failures worth asking again: the actor is being restarted (max_restarts) or was.
# They are retried until the source's own deadline (reward.timeouts), then the source failed.
_RETRYABLE = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
RETRY_PAUSE_S = 0.5  # between asks of a dead actor: Ray needs a moment to start its replacement


def rule_source_result(trajectory: Trajectory, scenario: Scenario, cfg: RewardConfig) -> SourceResult:
    """E_func of one trajectory as a SourceResult (pure; what a RuleChecker runs)."""
    from reward_actors.rules import RuleContext, e_func

    t0 = time.perf_counter()
    ctx = RuleContext.from_scenario(
        scenario, trajectory.messages, overlength_chars=cfg.overlength_chars, truncated=trajectory.truncated
    )
    res = e_func(trajectory.response_text, ctx, cfg.rule_weights)
    return SourceResult(res.e_func, SourceStatus.OK, time.perf_counter() - t0, ",".join(res.violations))


async def _within(awaitable: Awaitable[Any], deadline: float) -> Any:
    """Await until the `time.perf_counter()` deadline, then raise TimeoutError at once.

    Unlike `asyncio.wait_for`, it does not wait for the cancelled call to unwind: a Serve
    DeploymentResponse stuck in its router's retry loop acknowledges cancellation only when
    the loop next wakes, and the sample must not wait for that."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.perf_counter()))
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # no "exception never retrieved"
        raise TimeoutError
    return task.result()


class RuleChecker:
    """CPU regex rules for batches of trajectories (thin shell over `rule_source_result`)."""

    def __init__(self, reward_cfg: dict[str, Any]) -> None:
        self.cfg = RewardConfig.model_validate(reward_cfg)

    def check(self, trajectory: Trajectory, scenario: Scenario) -> SourceResult:
        return rule_source_result(trajectory, scenario, self.cfg)

    def ping(self) -> bool:
        return True


class _RMBatcher:
    """Collects concurrent RM requests for up to `window_s` (or `max_batch` items) and scores
    them with one call to the RMScorer actor."""

    def __init__(self, scorer: Any, max_batch: int, window_s: float) -> None:
        self.scorer, self.max_batch, self.window_s = scorer, max_batch, window_s
        self._pending: list[tuple[Trajectory, asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    async def score(self, trajectory: Trajectory) -> float:
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((trajectory, fut))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_later())
        return await fut

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.window_s)
        self._flusher = None
        self._flush()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            asyncio.ensure_future(self._run(batch))

    async def _run(self, batch: list[tuple[Trajectory, asyncio.Future]]) -> None:
        try:
            scores = await self.scorer.score.remote([t for t, _ in batch])
        except Exception as err:  # delivered to every waiting sample, which maps it to a status
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        for (_, fut), s in zip(batch, scores):
            if not fut.done():
                fut.set_result(float(s))


class RewardPool:
    """Fans each trajectory out to the enabled sources and combines their answers."""

    def __init__(
        self,
        reward_cfg: dict[str, Any],
        rm_scorer: Any,
        rule_checkers: list[Any],
        judge_handle: Any | None,
        rm_batch: int = 32,
        rm_window_s: float = 0.02,
    ) -> None:
        self.cfg = RewardConfig.model_validate(reward_cfg)
        self.rm = _RMBatcher(rm_scorer, rm_batch, rm_window_s)
        self.checkers = itertools.cycle(rule_checkers) if rule_checkers else None
        self.judge = judge_handle
        if SOURCE_JUDGE in self.cfg.sources and judge_handle is None:
            raise ValueError("reward.sources enables the judge but no judge pool was given")
        if SOURCE_RULES in self.cfg.sources and not rule_checkers:
            raise ValueError("reward.sources enables the rules but no RuleChecker was given")
        self.in_flight = 0

    async def _ask(self, call: Callable[[], Awaitable[Any]], timeout_s: float,
                   retries: list[int] | None = None) -> SourceResult:
        """One source's answer as a SourceResult: timeouts and errors become statuses. A dead
        actor (RMScorer, RuleChecker, being restarted by Ray) is asked again until the
        source's deadline; each re-ask is counted in `retries[0]` (the sample was re-scored)."""
        t0 = time.perf_counter()
        deadline = t0 + timeout_s
        failures = 0
        while True:
            try:
                value = await _within(call(), deadline)
                break
            except TimeoutError:
                why = f"no answer in {timeout_s:g}s" + (f" ({failures} actor failure(s))" if failures else "")
                return SourceResult(None, SourceStatus.TIMEOUT, time.perf_counter() - t0, why)
            except _RETRYABLE as err:
                failures += 1
                if time.perf_counter() + RETRY_PAUSE_S >= deadline:
                    return SourceResult(None, SourceStatus.ERROR, time.perf_counter() - t0,
                                        f"actor failed: {type(err).__name__} ({failures}x, deadline {timeout_s:g}s)")
                if retries is not None:
                    retries[0] += 1
                await asyncio.sleep(RETRY_PAUSE_S)
            except Exception as err:  # a source's own failure is a status, not a crash of the pool
                return SourceResult(None, SourceStatus.ERROR, time.perf_counter() - t0,
                                    f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
        if isinstance(value, SourceResult):
            return value
        return SourceResult(float(value), SourceStatus.OK, time.perf_counter() - t0)

    async def score(self, trajectory: Trajectory, scenario: Scenario) -> RewardResult:
        from reward_actors.judge.prompt import JudgeContext

        self.in_flight += 1
        record("repo_ray_queue_depth", self.in_flight, queue="reward")
        try:
            t = self.cfg.timeouts
            retries = [0]
            calls: dict[str, Awaitable[SourceResult]] = {
                SOURCE_RM: self._ask(lambda: self.rm.score(trajectory), t.rm_s, retries)
            }
            if SOURCE_RULES in self.cfg.sources:
                # checkers are interchangeable (pure): a re-ask after one died goes to the next one
                calls[SOURCE_RULES] = self._ask(lambda: next(self.checkers).check.remote(trajectory, scenario),
                                                t.rules_s, retries)
            if SOURCE_JUDGE in self.cfg.sources:
                ctx = JudgeContext.from_trajectory(trajectory, scenario)
                calls[SOURCE_JUDGE] = self._ask(lambda: self.judge.score.remote(ctx), t.judge_s, retries)
            answers = await asyncio.gather(*calls.values())
            # the driver records the result's figures (latency, status, reward) as it receives them
            result = combine_sources(trajectory.sample_id, dict(zip(calls, answers)), self.cfg)
            result.rescored = retries[0]
            return result
        finally:
            self.in_flight -= 1
            record("repo_ray_queue_depth", self.in_flight, queue="reward")

    def ping(self) -> bool:
        return True

