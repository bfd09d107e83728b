"""The driver killed mid-run in async mode, then `--resume`: the run continues from the last
checkpoint, the checkpoint's pending chunks are played again first (their original episodes
and seeds) and the ledger ends with every sample once (loop.py: what "the same next samples"
means in async mode). The chaos run (conftest.chaos_run) begins this way: its driver dies after
step 1, before any actor is killed."""

from __future__ import annotations

import collections
import re

import pytest

from repo_ray.pipeline.rundir import RunDir

from .conftest import CHAOS_DRIVER_DIES_AFTER, CHAOS_STEPS

pytestmark = pytest.mark.timeout(900)


def test_async_resume_plays_the_pending_chunks_again_and_counts_every_sample_once(chaos_run):
    state = chaos_run.summary["state_at_kill"]
    assert state["step"] == CHAOS_DRIVER_DIES_AFTER and state["pending"], state  # async: work was in flight
    assert chaos_run.summary["rl_steps"] == CHAOS_STEPS
    rd = RunDir(str(chaos_run.run_dir))
    ledger = rd.read_parquet_dir("rl", "ledger").to_pylist()
    ids = [r["sample_id"] for r in ledger]
    assert len(ids) == len(set(ids))
    assert collections.Counter(r["fate"] for r in ledger)["trained"] == CHAOS_STEPS * chaos_run.cfg.learner.batch_size
    assert chaos_run.fates_at_kill
    for sid, fate in chaos_run.fates_at_kill.items():  # what the killed driver recorded keeps its one fate
        assert next(r["fate"] for r in ledger if r["sample_id"] == sid) == fate
    final = rd.read_json("rl", "checkpoints", "latest.json")
    episodes = {re.match(r"(e\d+)-", i).group(1) for i in ids}
    assert episodes == {f"e{i:07d}" for i in range(final["cursor"])}  # nothing lost, pending chunks included
    assert chaos_run.pending_at_kill <= episodes
    # the pending chunks' samples not recorded before the kill were generated again after the resume
    log = rd.read_parquet_dir("rl", "trajectories").to_pylist()
    again = [r for r in log if r["role"] == "policy" and r["sample_id"] not in chaos_run.fates_at_kill
             and re.match(r"(e\d+)-", r["sample_id"]).group(1) in chaos_run.pending_at_kill]
    assert again and all(r["adapter_version"] >= 1 for r in again)
