"""The train command's evaluation stage: policies evaluated side by side as 1-CPU Ray tasks
give what the same evaluation in-process gives (the shared run's SFT model and RL adapter)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(900)  # the shared run is built on first use


def test_policies_evaluated_as_ray_tasks_match_the_in_process_evaluation(pipeline_run, ray_local):
    from repo_ray.domain.schemas import load_rows
    from repo_ray.pipeline.evaluation import evaluate_one, evaluate_policies

    s = pipeline_run.summary
    sft = Path(s["sft_model"])
    adapter = pipeline_run.run_dir / "rl" / "final_adapter"
    assert (adapter / "adapter_config.json").is_file()
    scenarios = load_rows("eval", s["data_dir"]).rows[:2]
    cases = load_rows("bad_cases", s["data_dir"]).rows[:1]
    policies = [("sft", sft, sft, None), ("repo", sft, sft, adapter)]
    cfg = pipeline_run.cfg.model_copy(update={"eval": pipeline_run.cfg.eval.model_copy(
        update={"task_min_dialogues": 0})})  # tasks although the evaluation is short
    fanned = evaluate_policies(cfg, policies, scenarios, cases)
    assert list(fanned) == ["sft", "repo"]
    for name, model, tok, ad in policies:
        alone, _ = evaluate_one(name, pipeline_run.cfg, model, tok, ad, scenarios, cases)
        got = fanned[name]
        assert got.adapter == alone.adapter
        assert [d.transcript for d in got.dialogues] == [d.transcript for d in alone.dialogues]
        assert [c.response for c in got.bad_cases] == [c.response for c in alone.bad_cases]
        assert got.metrics.estimates["rating"].value == alone.metrics.estimates["rating"].value
    # the adapter is loaded in the task: the RL policy's replies are its own, not the SFT model's
    assert fanned["repo"].adapter and fanned["sft"].adapter is None


def test_a_policy_that_cannot_be_loaded_in_a_task_is_its_one_line_error(ray_local, tmp_path):
    from repo_ray.config import RepoRayConfig
    from repo_ray.errors import UserError
    from repo_ray.pipeline.evaluation import evaluate_policies

    missing = tmp_path / "no-such-model"
    with pytest.raises(UserError, match="no-such-model") as err:
        evaluate_policies(RepoRayConfig(eval={"task_min_dialogues": 0}),
                          [("a", missing, missing, None), ("b", missing, missing, None)], [], [])
    # the loader's own error, not Ray's task-error wrapper with the worker's traceback
    assert "RayTaskError" not in type(err.value).__name__ and "\n" not in str(err.value), str(err.value)[:300]


def test_a_short_evaluation_runs_in_the_driver_without_starting_a_task(pipeline_run, monkeypatch):
    from repo_ray.domain.schemas import load_rows
    from repo_ray.pipeline import placement
    from repo_ray.pipeline.evaluation import evaluate_policies

    def no_task(*args, **kwargs):
        raise AssertionError("a Ray task was started for an evaluation below eval.task_min_dialogues")

    monkeypatch.setattr(placement, "start_policy_eval", no_task)
    s = pipeline_run.summary
    sft = Path(s["sft_model"])
    scenarios = load_rows("eval", s["data_dir"]).rows[:2]
    assert len(scenarios) < pipeline_run.cfg.eval.task_min_dialogues
    evals = evaluate_policies(pipeline_run.cfg, [("a", sft, sft, None), ("b", sft, sft, None)], scenarios, [])
    assert list(evals) == ["a", "b"] and len(evals["a"].dialogues) == 2
