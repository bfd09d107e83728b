"""Experiment trackers (repo_ray/trackers.py), CPU only, no Ray: a step row, the config and an
evaluation summary written through each library's client and read back with its own reader
(TensorBoard's EventAccumulator, MlflowClient); an absent library is one line naming the extra."""

from __future__ import annotations

import math
import sys
import time

import pytest

from repo_ray.config import RepoRayConfig
from repo_ray.trackers import TrackerUnavailable, eval_metrics, open_trackers, step_metrics


def _row(step: int, r_total: float) -> dict:
    from repo_ray.eval.stepstats import BatchStats, StepRow
    from repo_ray.learner.trainers import StepMetrics

    batch = BatchStats(samples=10, masked=2, r_total_mean=r_total, r_model_mean=0.5, e_judge_mean=3.0,
                       e_func_mean=-20.0, response_len_mean=30.0, distinct_1=0.4, distinct_2=0.6)
    learner = StepMetrics(algorithm="repo", policy_loss=0.1, value_loss=0.2, clip_fraction=0.05,
                          value_clip_fraction=None, approx_kl=0.01, kl_to_sft=0.02, kl_penalty=0.0, entropy=1.5,
                          grad_norm=0.7, value_grad_norm=None, lr=1e-3, logprob_mismatch=0.0, is_weight_mean=1.0,
                          is_weight_min=1.0, is_weight_max=1.0, is_capped_fraction=0.0, mean_advantage=0.0,
                          mean_reward=r_total, samples=8, masked=2, tokens=240, optimizer_steps=1, step_time_s=1.2)
    return StepRow(step=step, adapter_version=step, samples=8, max_staleness=1, step_time_s=2.0, samples_per_s=5.0,
                   batch=batch, control=None, learner=learner).columns()


EVALS = {"repo": {"metrics": {"estimates": {"rating": {"value": 3.5, "lo": 3.0, "hi": 4.0, "n": 6},
                                            "task_success": {"value": None, "lo": None, "hi": None, "n": 0}}}}}


def test_a_step_row_becomes_grouped_scalars_with_the_masked_share():
    m = step_metrics(_row(3, 0.25))
    assert m["reward/r_total_mean"] == 0.25 and m["reward/e_func_mean"] == -20.0
    assert m["reward/masked_share"] == pytest.approx(2 / 8)  # masked / trained samples, as the report reads it
    assert m["throughput/samples_per_s"] == 5.0 and m["step/max_staleness"] == 1.0
    assert m["learner/kl_to_sft"] == 0.02 and m["learner/learner_step_time_s"] == 1.2
    assert "learner/value_clip_fraction" not in m  # None is not a number
    assert all(math.isfinite(v) for v in m.values())
    assert eval_metrics(EVALS) == {"eval/repo/rating": 3.5}


def _track(tmp_path, **tracking):
    cfg = RepoRayConfig(tracking=tracking)
    t = open_trackers(cfg, tmp_path, "test-run")
    t.log_config(cfg.model_dump(mode="json"))
    for step, r in ((1, 0.1), (2, 0.3)):
        t.log_step(step, _row(step, r))
    t.log_eval(EVALS)
    t.close()
    return cfg


def test_tensorboard_events_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _track(tmp_path, tensorboard=True)
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {"reward/r_total_mean", "reward/masked_share", "learner/policy_loss", "eval/repo/rating"} <= scalars
    assert [(e.step, round(e.value, 6)) for e in acc.Scalars("reward/r_total_mean")] == [(1, 0.1), (2, 0.3)]
    assert [(e.step, e.value) for e in acc.Scalars("eval/repo/rating")] == [(2, 3.5)]
    texts = {t: acc.Tensors(t)[0].tensor_proto.string_val[0].decode() for t in acc.Tags()["tensors"]}
    assert '"tracking"' in texts["config/text_summary"] and "eval/repo/rating" in texts["eval/summary/text_summary"]


def test_mlflow_file_store_reads_back(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    _track(tmp_path, mlflow={"enabled": True})
    client = MlflowClient((tmp_path / "mlflow").resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("repo-ray").experiment_id])
    hist = client.get_metric_history(run.info.run_id, "reward/r_total_mean")
    assert [(m.step, round(m.value, 6)) for m in hist] == [(1, 0.1), (2, 0.3)]
    assert run.data.metrics["eval/repo/rating"] == 3.5
    assert run.data.params["learner.lora.r"] == "64" and run.info.status == "FINISHED"


def test_wandb_offline_writes_its_run_into_the_run_dir(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _track(tmp_path, wandb={"enabled": True})
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*test-run")
    (log,) = run_dir.glob("*.wandb")  # the transaction log `wandb sync` uploads (wandb 0.31 ships no reader)
    deadline = time.monotonic() + 15  # wandb-core writes the log in its own process, shortly after finish()
    while b"eval/repo/rating" not in (data := log.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for key in (b"reward/r_total_mean", b"learner/policy_loss", b"eval/repo/rating", b"tracking"):
        assert key in data, key  # history keys, summary keys and the config are protobuf strings in it


@pytest.mark.parametrize("tracking, module, extra", [
    ({"tensorboard": True}, "tensorboard", "tensorboard"),
    ({"wandb": {"enabled": True}}, "wandb", "wandb"),
    ({"mlflow": {"enabled": True}}, "mlflow", "mlflow"),
])
def test_an_absent_library_is_one_line_naming_the_extra(tmp_path, monkeypatch, tracking, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(TrackerUnavailable) as info:
        open_trackers(RepoRayConfig(tracking=tracking), tmp_path, "r")
    msg = str(info.value)
    assert "\n" not in msg and f"pip install 'repo-ray[{extra}]'" in msg


def test_no_tracker_enabled_writes_nothing(tmp_path):
    t = open_trackers(RepoRayConfig(), tmp_path, "r")
    assert not t
    t.log_step(1, _row(1, 0.1))
    t.close()
    assert list(tmp_path.iterdir()) == []
