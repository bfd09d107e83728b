"""The sync run's RL stage as a driver killed after step RESUME_FROM's checkpoint leaves it,
resumed by `ray job submit` of `repo-ray train --resume` against the local head (the README's
cluster path): the resumed step repeats the uninterrupted sync run's (calm) step exactly.
The killed driver is a copy of the shared sync run's directory taken at that checkpoint
(conftest.sync_run), not a second run: each RL run in the suite pays ~30 s of actor
start-up. The chaos run kills a driver for real (async, work in flight)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repo_ray.pipeline.rundir import RunDir

from .conftest import RESUME_FROM, SYNC_CALM_STEPS, run_rows, sync_config

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(900)


def test_a_killed_run_resumed_by_ray_job_submit_repeats_the_next_step_exactly(sync_run, pipeline_run, ray_local,
                                                                               tmp_path):
    from ray._private.worker import global_worker

    steps = SYNC_CALM_STEPS  # the shared sync run's config, stopped before its judge faults
    cfg = sync_config(pipeline_run.cfg.model.cache_dir, learner__max_steps=steps)
    last = RESUME_FROM  # the log's step is the learner version a sample met its fate at
    assert last == steps - 1

    run_dir = tmp_path / "job-resumed"
    src = pipeline_run.run_dir  # its data, tiny model, SFT and RM stages are reused, not its RL
    shutil.copytree(src, run_dir, ignore=lambda d, names: ["rl"] if d == str(src) else [])
    shutil.copytree(sync_run.rl_at_checkpoint, run_dir / "rl")
    assert RunDir(str(run_dir)).read_json("rl", "checkpoints", "latest.json")["step"] == last

    dashboard = f"http://{global_worker.node.address_info['webui_url']}"
    assert dashboard.startswith("http://127.0.0.1:")
    cfg_file = tmp_path / "job.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    ray_cli = str(Path(sys.executable).with_name("ray"))
    proc = subprocess.run(
        [ray_cli, "job", "submit", "--address", dashboard, "--working-dir", str(ROOT), "--",
         sys.executable, "-m", "repo_ray.cli", "train", "--config", str(cfg_file), "--run-dir", str(run_dir),
         "--resume", "--no-eval", "--no-progress"],
        capture_output=True, text=True, timeout=800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in (proc.stdout + proc.stderr).lower()
    rd = RunDir(str(run_dir))
    assert rd.read_json("rl", "checkpoints", "latest.json")["step"] == steps
    assert rd.read_json("summary.json")["rl_steps"] == steps

    def last_step(d):
        return sorted((r["sample_id"], r["r_total"]) for r in run_rows(d, "rl", "trajectories")
                      if r["step"] == last and r["fate"] == "trained")

    expected, got = last_step(sync_run.run_dir), last_step(run_dir)
    assert len(expected) == cfg.learner.batch_size
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [r for _, r in got] == pytest.approx([r for _, r in expected], abs=1e-4)
    ledger = run_rows(run_dir, "rl", "ledger")
    assert len(ledger) == len({r["sample_id"] for r in ledger})
    assert sum(r["fate"] == "trained" for r in ledger) == steps * cfg.learner.batch_size
