"""The recovery pieces without Ray: the ledger's rollback and re-score count, the limiter's
spend carried over a restart, the pool re-asking a restarted actor until the source's
deadline, and a checkpoint's pending chunks dispatched again first (loop.py docstring)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
import ray

from repo_ray.config import JudgeBudget, JudgeRateLimit
from repo_ray.domain.schemas import load_rows
from repo_ray.pipeline.ledger import Ledger
from repo_ray.pipeline.loop import LoopState, RLLoop
from repo_ray.pipeline.rundir import RunDir
from repo_ray.types import SampleFate, SourceStatus
from reward_actors.judge.limiter import JudgeRateLimiter, LimiterSpend
from reward_actors.pool import RewardPool

from .conftest import tiny_pipeline_config


def test_ledger_rollback_forgets_only_entries_after_the_mark_and_keeps_rescored():
    ledger = Ledger()
    ledger.record("a", SampleFate.TRAINED, 0, 0, rescored=2)
    ledger.mark()
    ledger.record("b", SampleFate.MASKED, 1, 0, "rm timeout")
    ledger.record("c", SampleFate.TRAINED, 1, 1, rescored=1)
    assert ledger.rollback() == 2
    assert "a" in ledger and "b" not in ledger and "c" not in ledger
    ledger.record("b", SampleFate.TRAINED, 1, 1)  # played again after the rollback: one fate
    table = ledger.take_unflushed()
    assert table.column("sample_id").to_pylist() == ["a", "b"] and table.column("rescored").to_pylist() == [2, 0]
    again = Ledger.from_table(table)
    assert again.entry("a").rescored == 2 and again.rescored() == 1


def test_limiter_spend_survives_a_restart_and_never_shrinks():
    clock = [0.0]
    rate = JudgeRateLimit(requests_per_s=100, burst=10, tokens_per_min=1e7)
    old = JudgeRateLimiter(rate, JudgeBudget(max_calls=5), clock=lambda: clock[0])
    clock[0] = 1.0
    for _ in range(3):
        assert old.acquire(10).granted
    fresh = JudgeRateLimiter(rate, JudgeBudget(max_calls=5), clock=lambda: clock[0])  # what Ray's restart builds
    fresh.restore_spend(old.spend())
    assert fresh.spend() == LimiterSpend(3, 30, False)
    fresh.restore_spend(LimiterSpend(1, 5, False))  # an older copy (the checkpoint's) does not undo calls
    assert fresh.spend().calls_spent == 3
    assert fresh.acquire(10).granted and fresh.acquire(10).granted
    assert fresh.acquire(10).status == "budget_exhausted"  # 5 calls in all: the budget was not forgotten
    later = JudgeRateLimiter(rate, JudgeBudget(max_calls=50), clock=lambda: clock[0])
    later.restore_spend(fresh.spend())
    assert later.exhausted and later.acquire(1).status == "budget_exhausted"


def _dead_then(answer: float, failures: int):
    calls = {"n": 0}

    async def call():
        calls["n"] += 1
        if calls["n"] <= failures:
            raise ray.exceptions.ActorUnavailableError("restarting", None)
        return answer

    return call, calls


def test_pool_asks_a_restarted_actor_again_and_counts_the_rescore():
    call, calls = _dead_then(0.7, failures=2)
    retries = [0]
    res = asyncio.run(RewardPool._ask(None, call, 5.0, retries))
    assert res.status is SourceStatus.OK and res.score == pytest.approx(0.7)
    assert calls["n"] == 3 and retries == [2]


def test_pool_masks_only_once_the_source_deadline_has_passed():
    call, calls = _dead_then(0.7, failures=100)
    t0 = time.perf_counter()
    res = asyncio.run(RewardPool._ask(None, call, 1.2, [0]))
    elapsed = time.perf_counter() - t0
    assert res.status is SourceStatus.ERROR and res.score is None and "deadline 1.2s" in res.detail
    assert 0.5 <= elapsed < 1.3 and calls["n"] >= 2  # it kept asking until the deadline, not a fixed count


class _Handle:
    def __init__(self):
        self.calls = []
        self.rollout = SimpleNamespace(remote=self._rollout)

    def _rollout(self, scenarios, episode_ids, sampling, group_size):
        self.calls.append((list(episode_ids), sampling.seed))
        return object()


def test_a_checkpoints_pending_chunks_are_dispatched_again_first_with_their_ids_and_seeds(tmp_path, data_dir):
    cfg = tiny_pipeline_config(str(tmp_path / "cache"), pipeline__frozen_control=False)
    scenarios = load_rows("rl", data_dir).rows
    first = _Handle()
    loop = RLLoop(cfg, RunDir(str(tmp_path / "run")), {"rollout-0": first, "rollout-1": _Handle()}, None, None, None,
                  scenarios, [], LoopState(), Ledger(), progress=False)
    try:
        loop._dispatch()
        pending = loop.pending_chunks()
        assert [p[0] for p in pending] == [0, 1] and pending[0][1] == 0 and pending[1][1] == pending[0][2]
        state = LoopState(step=1, cursor=loop.state.cursor, next_chunk=loop.state.next_chunk, pending=pending)
    finally:
        loop.close()
    dispatched_before = first.calls[0]
    again = _Handle()
    resumed = RLLoop(cfg, RunDir(str(tmp_path / "run")), {"rollout-0": again, "rollout-1": _Handle()}, None, None, None,
                     scenarios, [], state, Ledger(), progress=False)
    try:
        resumed._dispatch()
        assert again.calls[0] == dispatched_before  # same episodes, same seed, first
        assert resumed.state.cursor == state.cursor  # pending chunks do not move the cursor
        assert resumed.pending_chunks() == pending
    finally:
        resumed.close()


def test_the_in_run_rollback_state_is_the_checkpoints_with_its_pending_chunks(tmp_path):
    from repo_ray.pipeline.runlog import checkpoint, checkpoint_state, flush, read_steps

    from .test_runlog import FakeLearner, FakeLoop, row

    rd = RunDir(str(tmp_path / "run"))
    assert checkpoint_state(rd, 0) == LoopState()  # before the first checkpoint: back to the start

    class Pending(FakeLoop):
        def pending_chunks(self):
            return [[3, 12, 16, 99]]

        def _chunk_at(self, *chunk):
            return chunk

    lp = Pending(LoopState(step=1, cursor=16, next_chunk=4))
    lp.ledger.record("a", SampleFate.TRAINED, 0, 0)
    lp.pending_step_rows.append(row(1))
    checkpoint(rd, lp, FakeLearner())
    assert rd.read_json("rl", "checkpoints", "latest.json")["save_s"] >= 0
    lp.state.step = 2
    lp.ledger.record("b", SampleFate.TRAINED, 1, 1)
    lp.pending_step_rows.append(row(2))
    flush(rd, lp, 2)
    state = checkpoint_state(rd, 1)
    assert state == LoopState(step=1, cursor=16, next_chunk=4, pending=[[3, 12, 16, 99]])
    assert [r["step"] for r in read_steps(rd)] == [1]  # the step after the checkpoint is gone
    assert lp.ledger.rollback() == 1 and "b" not in lp.ledger and "a" in lp.ledger
    lp.ledger.record("c", SampleFate.TRAINED, 1, 1)
    flush(rd, lp, 1)  # a second flush at the checkpoint's step (the run-end drain) adds, never overwrites
    ids = rd.read_parquet_dir("rl", "ledger").column("sample_id").to_pylist()
    assert sorted(ids) == ["a", "c"]
