"""Trackers hooked into `train`: the shared tiny run has tracking.tensorboard on, and its event
files hold every RL step's row, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.timeout(900)  # the shared run is built on first use


def test_the_runs_tensorboard_events_hold_every_steps_row(pipeline_run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from repo_ray.pipeline.rundir import RunDir
    from repo_ray.pipeline.runlog import read_steps

    steps = read_steps(RunDir(str(pipeline_run.run_dir)))
    acc = EventAccumulator(str(pipeline_run.run_dir / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"reward/r_total_mean", "reward/e_func_mean", "reward/masked_share", "learner/policy_loss",
            "throughput/samples_per_s"} <= tags
    logged = {e.step: e.value for e in acc.Scalars("reward/r_total_mean")}
    want = {s["step"]: s["r_total_mean"] for s in steps if not math.isnan(s["r_total_mean"])}
    assert sorted(logged) == sorted(want) and len(want) == pipeline_run.summary["rl_steps"]
    for step, v in want.items():
        assert logged[step] == pytest.approx(v, rel=1e-6)
    assert "config/text_summary" in acc.Tags()["tensors"]
