"""The driver killed mid-run in async mode, then `--resume`: the run continues from the last
checkpoint, the checkpoint's pending chunks are played again first (their original episodes
and seeds) and the ledger ends with every sample once (loop.py: what "the same next samples"
means in async mode)."""

from __future__ import annotations

import collections
import re

import pytest

from repo_ray.pipeline.rundir import RunDir

from .conftest import run_rl_only, tiny_pipeline_config

pytestmark = pytest.mark.timeout(900)


class Killed(Exception):
    pass


def test_async_resume_plays_the_pending_chunks_again_and_counts_every_sample_once(pipeline_run, tmp_path):
    run_dir = tmp_path / "async-resumed"
    # a checkpoint after every step (the default; the shared run's config checkpoints every 2)
    cfg = tiny_pipeline_config(pipeline_run.cfg.model.cache_dir, pipeline__mode="async", learner__max_steps=2,
                               pipeline__checkpoint_every=1, pipeline__frozen_control=False)
    rd = RunDir(str(run_dir))
    seen_before: dict[str, str] = {}

    def die_after_checkpoint(lp, record):
        if record.step == 1:  # the checkpoint of step 1 is written; what is in flight dies with the driver
            seen_before.update({sid: lp.ledger.fate(sid).value for sid in list(lp.ledger._entries)})
            raise Killed

    with pytest.raises(Killed):
        run_rl_only(pipeline_run, run_dir, mode="async", max_steps=2, on_step=die_after_checkpoint, cfg=cfg)
    state = rd.read_json("rl", "checkpoints", "latest.json")
    assert state["step"] == 1 and state["pending"], state  # async: work was in flight at the checkpoint
    pending_episodes = {f"e{i:07d}" for _, start, stop, _ in state["pending"] for i in range(start, stop)}

    resumed = run_rl_only(pipeline_run, run_dir, mode="async", max_steps=2, resume=True, cfg=cfg)
    assert resumed.summary["rl_steps"] == 2
    ledger = rd.read_parquet_dir("rl", "ledger").to_pylist()
    ids = [r["sample_id"] for r in ledger]
    assert len(ids) == len(set(ids))
    assert collections.Counter(r["fate"] for r in ledger)["trained"] == 2 * pipeline_run.cfg.learner.batch_size
    for sid, fate in seen_before.items():  # what the killed run recorded keeps its one fate
        assert next(r["fate"] for r in ledger if r["sample_id"] == sid) == fate
    final = rd.read_json("rl", "checkpoints", "latest.json")
    episodes = {re.match(r"(e\d+)-", i).group(1) for i in ids}
    assert episodes == {f"e{i:07d}" for i in range(final["cursor"])}  # nothing lost, pending chunks included
    assert pending_episodes <= episodes
    # the pending chunks' samples not recorded before the kill were generated again after the resume
    log = rd.read_parquet_dir("rl", "trajectories").to_pylist()
    again = [r for r in log if r["role"] == "policy" and r["sample_id"] not in seen_before
             and re.match(r"(e\d+)-", r["sample_id"]).group(1) in pending_episodes]
    assert again and all(r["adapter_version"] >= 1 for r in again)
