"""`ray job submit` of `repo-ray train` against the local head (the README's cluster path)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repo_ray.pipeline.rundir import RunDir

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(900)


def test_ray_job_submit_runs_a_training_job_to_success(pipeline_run, ray_local, tmp_path):
    from ray._private.worker import global_worker

    dashboard = f"http://{global_worker.node.address_info['webui_url']}"
    assert dashboard.startswith("http://127.0.0.1:")
    run_dir = tmp_path / "job-run"
    shutil.copytree(pipeline_run.run_dir, run_dir)  # data, SFT, RM and RL checkpoints are reused
    cfg_file = tmp_path / "job.yaml"
    cfg_file.write_text(yaml.safe_dump(pipeline_run.cfg.model_dump(mode="json")))
    steps_before = pipeline_run.summary["rl_steps"]
    ray_cli = str(Path(sys.executable).with_name("ray"))
    proc = subprocess.run(
        [ray_cli, "job", "submit", "--address", dashboard, "--working-dir", str(ROOT), "--",
         sys.executable, "-m", "repo_ray.cli", "train", "--config", str(cfg_file), "--run-dir", str(run_dir),
         "--resume", "--no-eval", "--no-progress", "--set", f"learner.max_steps={steps_before + 1}"],
        capture_output=True, text=True, timeout=800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "succeeded" in (proc.stdout + proc.stderr).lower()
    rd = RunDir(str(run_dir))
    assert rd.read_json("rl", "checkpoints", "latest.json")["step"] == steps_before + 1
    summary = rd.read_json("summary.json")
    assert summary["rl_steps"] == steps_before + 1
