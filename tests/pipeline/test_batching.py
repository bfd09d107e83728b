"""GRPO batches hold whole groups: the loop's batch selection (pure) and the loop's own
filing of scored samples, driven without Ray (the learner step is a stand-in)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from repo_ray.learner.trainers import StepMetrics
from repo_ray.pipeline.ledger import Ledger
from repo_ray.pipeline.loop import LoopState, RLLoop, _Sample, select_batch
from repo_ray.pipeline.rundir import RunDir
from repo_ray.types import Message, RewardResult, Role, SampleFate, SourceResult, SourceStatus, Trajectory

from .conftest import tiny_pipeline_config

K = 4


def sample(gid: str, j: int, version: int = 0, masked: bool = False, k: int = K) -> _Sample:
    sid = f"{gid}:k{j}" if k > 1 else gid
    t = Trajectory(sid, "sc", 0, [Message(Role.SYSTEM, "s")], "a reply", [1, 2], [3, 4], [-0.5, -0.5], [1, 1], "ask",
                   version, group_id=gid if k > 1 else None)
    ok = SourceResult(1.0, SourceStatus.OK)
    if masked:
        r = RewardResult(sid, None, None, None, None, None, {"rm": SourceResult(None, SourceStatus.TIMEOUT)}, True,
                         "rm timeout")
    else:
        r = RewardResult(sid, 1.0 + j, None, None, 0.0, 1.0 + j, {"rm": ok}, False)
    return _Sample(t, r, 0.0)


def group(gid: str, version: int = 0, members: int = K) -> list[_Sample]:
    return [sample(gid, j, version) for j in range(members)]


def group_sizes(batch: list[_Sample]) -> list[int]:
    return list(Counter(s.trajectory.group_id for s in batch).values())


def test_select_batch_takes_the_oldest_complete_groups_only():
    buffered = group("g3", 1) + group("g2", 0, members=3) + group("g1", 1) + group("g0", 0)
    random.Random(0).shuffle(buffered)
    batch = select_batch(buffered, version=1, staleness=1, batch_size=8, group_size=K)
    assert group_sizes(batch) == [K, K]
    assert [s.trajectory.sample_id for s in batch] == [f"g0:k{j}" for j in range(K)] + [f"g1:k{j}" for j in range(K)]
    # three complete groups (g2 lacks a member) do not make a batch of four groups
    assert select_batch(buffered, version=1, staleness=1, batch_size=16, group_size=K) is None
    # at version 2 with staleness 0 nothing is eligible
    assert select_batch(buffered, version=2, staleness=0, batch_size=4, group_size=K) is None
    with pytest.raises(ValueError, match="not a multiple of the group size"):
        select_batch(buffered, version=1, staleness=1, batch_size=6, group_size=K)


def test_select_batch_without_groups_is_the_first_eligible_by_version_and_id():
    buffered = [sample(f"s{i}", 0, version=v, k=1) for i, v in ((3, 0), (1, 1), (2, 0), (0, 1))]
    batch = select_batch(buffered, version=1, staleness=1, batch_size=3, group_size=1)
    assert [s.trajectory.sample_id for s in batch] == ["s2", "s3", "s0"]


def learner_metrics() -> StepMetrics:
    return StepMetrics(**{f: "grpo" if f == "algorithm" else 0 for f in StepMetrics.__dataclass_fields__})


def test_every_grpo_batch_of_the_loop_is_whole_groups_and_a_masked_member_drops_its_group(tmp_path):
    cfg = tiny_pipeline_config(str(tmp_path / "cache"), learner__algorithm="grpo", learner__batch_size=16,
                               learner__grpo={"group_size": K})
    assert cfg.learner.batch_size % K == 0
    loop = RLLoop(cfg, RunDir(str(tmp_path / "run")), {}, None, None, None, [], [], LoopState(), Ledger(),
                  progress=False)
    try:
        assert loop.group_size == K
        arrivals = [sample(f"e{g:02d}:t0", j, masked=(g, j) in {(2, 1), (7, 3)}) for g in range(12) for j in range(K)]
        random.Random(1).shuffle(arrivals)  # rewards arrive in any order
        batches = []
        for s in arrivals:
            loop._accept(s)
            batch = loop._ready_batch()
            if batch is not None:  # what RLLoop.run does with a ready batch, minus the learner
                ids = {b.trajectory.sample_id for b in batch}
                loop.buffer = [b for b in loop.buffer if b.trajectory.sample_id not in ids]
                loop._complete_step(batch, learner_metrics(), None, 0.1)
                batches.append(batch)
        loop.drain("end of test")
    finally:
        loop.close()

    assert batches and all(group_sizes(b) == [K] * (16 // K) for b in batches)
    trained_groups = {s.trajectory.group_id for b in batches for s in b}
    assert not trained_groups & {"e02:t0", "e07:t0"}
    ledger = loop.ledger
    assert len(ledger) == len(arrivals)  # every sample exactly once
    assert ledger.fate("e02:t0:k1") == SampleFate.MASKED and ledger.fate("e07:t0:k3") == SampleFate.MASKED
    for sid in ("e02:t0:k0", "e02:t0:k2", "e02:t0:k3", "e07:t0:k0"):
        assert ledger.fate(sid) == SampleFate.DISCARDED, sid
        assert "member" in ledger.entry(sid).reason and "masked" in ledger.entry(sid).reason
    assert ledger.counts()["trained"] == sum(len(b) for b in batches)
    rows = loop.pending_step_rows
    assert [r.samples for r in rows] == [16] * len(batches)


def test_a_grpo_batch_size_that_splits_groups_is_a_one_line_config_error():
    from repo_ray.config import config_from_dict
    from repo_ray.errors import ConfigError

    learner = {"algorithm": "grpo", "batch_size": 16, "micro_batch_size": 2, "grpo": {"group_size": 3}}
    with pytest.raises(ConfigError, match=r"learner: batch_size 16 is not a multiple of grpo.group_size 3") as err:
        config_from_dict({"learner": learner}, source="cfg.yaml")
    assert "\n" not in str(err.value)
    config_from_dict({"learner": {**learner, "algorithm": "repo"}}, source="cfg.yaml")  # no groups: no constraint
