"""Chaos: in one async run every actor kind is killed once by process id (SIGKILL) — a
rollout worker, the RewardPool, a rule checker, the RM scorer, a judge replica, the judge
limiter and a learner rank — and the run finishes with nothing lost or counted twice
(placement.py, "What survives what")."""

from __future__ import annotations

import collections
import re
import time

import pytest

from repo_ray.pipeline.placement import RESTART_KINDS
from repo_ray.pipeline.rundir import RunDir
from repo_ray.pipeline.runlog import read_events

from .conftest import CHAOS_KILLS, CHAOS_STEPS, metrics_page, parse_metrics, run_rows

pytestmark = pytest.mark.timeout(900)


def test_every_kind_was_killed_once_and_the_run_finished(chaos_run):
    kinds = [k.split(":")[0] for k in chaos_run.killed]
    assert sorted(kinds) == sorted(k for ks in CHAOS_KILLS.values() for k in ks) == sorted(RESTART_KINDS)
    assert chaos_run.summary["rl_steps"] == CHAOS_STEPS


def test_the_ledger_holds_every_sample_once_and_no_episode_is_lost(chaos_run):
    ledger = run_rows(chaos_run.run_dir, "rl", "ledger")
    ids = [r["sample_id"] for r in ledger]
    assert len(ids) == len(set(ids))
    fates = collections.Counter(r["fate"] for r in ledger)
    assert fates["trained"] == CHAOS_STEPS * chaos_run.cfg.learner.batch_size
    state = RunDir(str(chaos_run.run_dir)).read_json("rl", "checkpoints", "latest.json")
    episodes = {re.match(r"e(\d+)-", i).group(1) for i in ids}
    assert episodes == {f"{i:07d}" for i in range(state["cursor"])}  # lost: 0
    log = [r for r in run_rows(chaos_run.run_dir, "rl", "trajectories") if r["role"] == "policy"]
    assert sorted(r["sample_id"] for r in log) == sorted(ids)
    # the pool's death re-scored the samples it held: the ledger says which
    assert sum(r["rescored"] > 0 for r in ledger) > 0
    # a failed source is never a 0: every masked sample has no total, every trained one all sources ok
    for r in log:
        assert (r["r_total"] is None) == (r["fate"] == "masked" or r["masked"])


def test_the_metrics_count_a_restart_of_every_kind(chaos_run):
    def counts(body: str) -> dict[str, float]:  # one series per reporting process: summed
        return parse_metrics(body).summed("ray_repo_ray_actor_restarts_total", "kind")

    deadline = time.time() + 30
    while True:
        seen = counts(metrics_page())
        during = [counts(p) for p in chaos_run.metrics_pages]
        best = {k: max([seen.get(k, 0.0)] + [d.get(k, 0.0) for d in during]) for k in RESTART_KINDS}
        if all(v >= 1 for v in best.values()) or time.time() > deadline:
            break
        time.sleep(2)
    assert all(v >= 1 for v in best.values()), best


def test_the_events_and_the_report_list_every_restart(chaos_run, tmp_path):
    from repo_ray.eval.report import faults_markdown

    events = read_events(RunDir(str(chaos_run.run_dir)))
    restarted = {e["actor"] for e in events if e["kind"] == "restart"}
    assert restarted >= set(RESTART_KINDS), restarted
    assert any(e["kind"] == "rollback" for e in events)
    assert {e["actor"] for e in events if e["kind"] == "resubmit"} >= {"rollout"}  # the loop's own resubmissions
    text = faults_markdown(chaos_run.run_dir)
    for kind in RESTART_KINDS:
        assert f"restart {kind} x" in text, kind
