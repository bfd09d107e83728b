"""Ledger (every sample once) and run directory (stage reuse by input hash, manifest)."""

import os

import pytest

from repo_ray.pipeline.ledger import DuplicateSampleError, Ledger
from repo_ray.pipeline.rundir import RunDir, RunDirError, resolve_run_dir
from repo_ray.types import SampleFate


def test_ledger_records_each_sample_once_and_round_trips():
    ledger = Ledger()
    ledger.record("a", SampleFate.TRAINED, 1, 0)
    ledger.record("b", SampleFate.MASKED, 1, 0, "rm timeout")
    with pytest.raises(DuplicateSampleError, match="sample a already recorded as trained"):
        ledger.record("a", SampleFate.DISCARDED, 2, 1)
    part = ledger.take_unflushed()
    assert part.num_rows == 2 and ledger.take_unflushed().num_rows == 0
    ledger.record("c", SampleFate.DISCARDED, 2, 0, "stale")
    rebuilt = Ledger.from_table(part)
    assert rebuilt.counts() == {"trained": 1, "masked": 1} and "c" not in rebuilt
    assert ledger.counts() == {"trained": 1, "masked": 1, "discarded": 1}


def test_stage_reuse_only_on_matching_input_hash(tmp_path):
    rd = RunDir(str(tmp_path / "run"))
    assert not rd.stage_done("sft", "h1")
    rd.mark_stage("sft", "h1", rows=3)
    assert rd.stage_done("sft", "h1") and not rd.stage_done("sft", "h2")
    rd.write_manifest({"name": "x"})
    manifest = rd.read_json("manifest.json")
    assert manifest["config"] == {"name": "x"} and manifest["packages"]["torch"].startswith("2.")
    assert "git_sha" in manifest


def test_parquet_parts_concatenate(tmp_path):
    import pyarrow as pa

    rd = RunDir(str(tmp_path))
    assert rd.read_parquet_dir("log") is None
    rd.write_parquet(pa.table({"x": [1, 2]}), "log", "part-000001.parquet")
    rd.write_parquet(pa.table({"x": [3]}), "log", "part-000002.parquet")
    assert rd.read_parquet_dir("log").column("x").to_pylist() == [1, 2, 3]


def test_relative_run_dir_is_absolutised_by_hand_and_refused_in_a_job(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_run_dir("runs/x") == str(tmp_path / "runs" / "x")
    assert resolve_run_dir("s3://bucket/run") == "s3://bucket/run"
    monkeypatch.setenv("RAY_JOB_SUBMISSION_ID", "raysubmit_1")
    with pytest.raises(RunDirError, match="relative; inside a Ray job"):
        resolve_run_dir("runs/x")
    assert os.path.isabs(resolve_run_dir(str(tmp_path)))


def test_stage_helper_reuses_only_a_finished_stage_with_the_same_inputs_and_output(tmp_path, capsys):
    rd = RunDir(str(tmp_path / "run"))
    stage = rd.stage("sft", {"lr": 1e-3}, 7, output=("sft",))
    assert not stage.reused("out")
    (rd.local("sft") / "model.txt").write_text("w")
    stage.finish("2 steps", "out", first_loss=1.5)
    info = rd.read_json("sft", "stage.json")
    assert info["input_hash"] == stage.key and info["first_loss"] == 1.5 and info["seconds"] >= 0
    assert "[repo-ray] sft: 2 steps (" in capsys.readouterr().out
    assert rd.stage("sft", {"lr": 1e-3}, 7).reused("out")
    assert "sft: reusing out" in capsys.readouterr().out
    assert not rd.stage("sft", {"lr": 1e-3}, 7).reused("out", ready=False)  # its output is gone
    assert not rd.stage("sft", {"lr": 2e-3}, 7).reused("out")


def test_the_rl_learning_rate_is_no_part_of_the_sft_and_dpo_stage_keys_when_they_set_their_own():
    from repo_ray.config import RepoRayConfig
    from repo_ray.pipeline.train import optimizer_key

    def cfg(**learner):
        return RepoRayConfig.model_validate({"learner": learner})

    own = {"sft": {"lr": 3e-3}}
    assert optimizer_key(cfg(**own, optimizer={"lr": 1e-3}), 3e-3) == \
        optimizer_key(cfg(**own, optimizer={"lr": 5e-4}), 3e-3)
    # without an own rate the stage trains at learner.optimizer.lr: it is part of the key
    assert optimizer_key(cfg(optimizer={"lr": 1e-3}), None) != optimizer_key(cfg(optimizer={"lr": 5e-4}), None)
    assert optimizer_key(cfg(**own, optimizer={"grad_clip": 0.5}), 3e-3) != optimizer_key(cfg(**own), 3e-3)
