"""The asynchronous REPO pipeline end to end on the local Ray cluster (one shared run)."""

from __future__ import annotations

import collections
import re
import time
import urllib.request

import pytest

from repo_ray.pipeline.rundir import RunDir

from .conftest import metrics_page, parse_metrics

# one shared tiny run (SFT, RM, 4 RL steps, a killed worker) is built by the first test
pytestmark = pytest.mark.timeout(900)


def table(run_dir, *parts):
    t = RunDir(str(run_dir)).read_parquet_dir(*parts)
    assert t is not None, f"no parquet under {parts}"
    return t


def test_every_sample_is_in_the_ledger_exactly_once_with_its_fate(pipeline_run):
    ledger = table(pipeline_run.run_dir, "rl", "ledger").to_pylist()
    ids = [r["sample_id"] for r in ledger]
    assert len(ids) == len(set(ids))
    fates = collections.Counter(r["fate"] for r in ledger)
    assert set(fates) <= {"trained", "masked", "discarded"}
    assert fates["trained"] == pipeline_run.summary["rl_steps"] * pipeline_run.cfg.learner.batch_size
    log = table(pipeline_run.run_dir, "rl", "trajectories").to_pylist()
    policy_ids = [r["sample_id"] for r in log if r["role"] == "policy"]
    assert sorted(policy_ids) == sorted(ids)  # the log and the ledger hold the same samples, once each


def test_adapter_versions_advanced_on_every_worker(pipeline_run):
    versions = pipeline_run.worker_versions
    assert len(versions) == pipeline_run.summary["rl_steps"] == 4
    for step, per_worker in enumerate(versions, start=1):
        assert set(per_worker) == {"rollout-0", "rollout-1"}
        assert all(v == step for v in per_worker.values()), per_worker


def test_async_lag_equals_staleness_and_sync_lag_is_zero(pipeline_run, sync_run):
    async_steps = table(pipeline_run.run_dir, "rl", "steps").to_pylist()
    assert max(r["max_staleness"] for r in async_steps) == pipeline_run.cfg.pipeline.max_staleness == 1
    sync_steps = table(sync_run.run_dir, "rl", "steps").to_pylist()
    assert len(sync_steps) > 1 and max(r["max_staleness"] for r in sync_steps) == 0
    log = table(pipeline_run.run_dir, "rl", "trajectories").to_pylist()
    lags = [r["step"] - r["adapter_version"] for r in log if r["fate"] == "trained"]
    assert max(lags) == 1 and min(lags) == 0


def test_parquet_log_holds_every_reward_field(pipeline_run):
    t = table(pipeline_run.run_dir, "rl", "trajectories")
    for col in ("r_model", "e_judge", "e_func", "e_enh", "r_total", "masked", "reason", "rm_status", "judge_status",
                "rules_status", "response_text", "adapter_version", "fate"):
        assert col in t.column_names
    trained = [r for r in t.to_pylist() if r["fate"] == "trained"]
    assert trained and all(r["rm_status"] == r["judge_status"] == r["rules_status"] == "ok" for r in trained)
    assert all(r["r_total"] is not None and r["e_enh"] is not None for r in trained)
    controls = [r for r in t.to_pylist() if r["role"] == "control"]
    assert controls and all(r["adapter_version"] == 0 for r in controls)  # the frozen policy never updates


def test_killed_rollout_worker_is_replaced_and_no_episode_is_lost(pipeline_run):
    assert pipeline_run.killed == ["rollout-0"]
    ledger = table(pipeline_run.run_dir, "rl", "ledger").to_pylist()
    episodes = {re.match(r"e(\d+)-", r["sample_id"]).group(1) for r in ledger}
    state = RunDir(str(pipeline_run.run_dir)).read_json("rl", "checkpoints", "latest.json")
    # every episode dispatched before the last checkpoint has its turns in the ledger
    assert episodes == {f"{i:07d}" for i in range(state["cursor"])}
    assert pipeline_run.worker_versions[-1]["rollout-0"] == pipeline_run.summary["rl_steps"]


def test_metrics_endpoint_serves_repo_ray_series(pipeline_run, ray_local):
    deadline = time.time() + 30
    body = ""
    while time.time() < deadline:
        body = metrics_page()
        if "ray_repo_ray_samples_total" in body and "ray_repo_ray_judge_requests_total" in body:
            break
        time.sleep(2)
    served = parse_metrics(body)
    for name, kind in (("repo_ray_samples_total", "counter"), ("repo_ray_judge_requests_total", "counter"),
                       ("repo_ray_learner_step_seconds", "histogram")):
        assert served.kind_of(name) == kind, name
    # gauges leave the endpoint ~20 s after their last set: they were read during the run
    during = [parse_metrics(page) for page in pipeline_run.metrics_pages]
    for gauge in ("repo_ray_adapter_version", "repo_ray_staleness", "repo_ray_reward_mean"):
        assert any(d.kind_of(gauge) == "gauge" for d in during), gauge


def test_every_series_the_grafana_dashboard_reads_is_served_as_its_kind(pipeline_run, ray_local):
    """deploy/grafana/dashboards/repo-ray.json against this run's metrics endpoint: each series
    the dashboard queries is served under that exact name with the kind METRICS gives it."""
    from pathlib import Path

    from ray._private.worker import global_worker

    from repo_ray.telemetry import METRICS

    def metric_name(series: str) -> str:  # ray_NAME, or ray_NAME_bucket/_sum/_count of a histogram
        name = series.removeprefix("ray_")
        return next((name.removesuffix(s) for s in ("_bucket", "_sum", "_count")
                     if name.endswith(s) and name.removesuffix(s) in METRICS), name)

    dashboard = (Path(__file__).resolve().parents[2] / "deploy/grafana/dashboards/repo-ray.json").read_text()
    wanted = {metric_name(s) for s in re.findall(r"\bray_repo_ray_\w+", dashboard)}
    assert wanted <= set(METRICS)
    rows = table(pipeline_run.run_dir, "rl", "trajectories").to_pylist()
    # Ray 2.60's agent drops a gauge about 20 s after its last set (seen here: 2 export
    # intervals), and the run's actors are gone once the fixture returns, so gauges cannot be
    # checked live after the run; tests/cluster checks their names against METRICS.
    # Counters and histograms stay served; the event counters below only exist once their
    # event happened, so each is required exactly when this run had it.
    events = {
        "repo_ray_masked_total": any(r["masked"] for r in rows),
        "repo_ray_source_failures_total": any(r[c] not in (None, "ok") for r in rows
                                              for c in ("rm_status", "judge_status", "rules_status")),
        "repo_ray_judge_rate_limited_total": False,  # set from the judge's outcomes on the endpoint
    }
    # A failed judge call is retried only while the sample's deadline allows, so no outcome
    # implies a retry: the retry counter is checked by name only (tests/cluster).
    # Restarts, re-scores, rollbacks and alerts exist only once their fault happened: the chaos
    # run and the sync run's judge faults (tests/pipeline/test_chaos.py, test_judge_faults.py) check them.
    exempt = {"repo_ray_judge_retries_total", "repo_ray_actor_restarts_total", "repo_ray_rescored_total",
              "repo_ray_rollbacks_total", "repo_ray_alerts_total"}
    expected = {n for n in wanted if METRICS[n].kind != "gauge" and n not in events and n not in exempt}
    assert expected >= {"repo_ray_samples_total", "repo_ray_judge_requests_total", "repo_ray_learner_step_seconds"}
    port = global_worker.node.metrics_export_port
    deadline = time.time() + 30
    while True:
        served = parse_metrics(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
        outcomes = served.summed("ray_repo_ray_judge_requests_total", "status")
        events["repo_ray_judge_rate_limited_total"] = "rate_limited" in outcomes
        required = expected | {n for n, happened in events.items() if happened and n in wanted}
        missing = {n for n in required if served.kind_of(n) is None}
        if not missing or time.time() > deadline:
            break
        time.sleep(2)
    assert not missing, f"the dashboard reads series this run does not serve: {sorted(missing)}"
    for name in required:
        assert served.kind_of(name) == METRICS[name].kind, name
    for name in required:  # a counter keeps its single _total; a histogram serves its three series
        suffixes = ("_bucket", "_sum", "_count") if METRICS[name].kind == "histogram" else ("",)
        assert {f"ray_{name}{s}" for s in suffixes} <= set(served.samples), name
