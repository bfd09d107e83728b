"""The judge fault matrix at pipeline level: in one sync run the local judge answers 429
storms, 5xx bursts, hangs, malformed JSON and slow answers, then its budget runs out (the shared
sync run, after its calm steps). Each:
training goes on, the masked share is reported per step, an alert fires when it passes
pipeline.alert_masked_share, and a failed verdict is never a 0."""

from __future__ import annotations

import pytest

from repo_ray.pipeline.rundir import RunDir
from repo_ray.pipeline.runlog import read_events

from .conftest import ALERT_SHARE, JUDGE_FAULTS, SYNC_CALM_STEPS, run_rows

pytestmark = pytest.mark.timeout(900)


def test_training_goes_on_through_every_fault_but_the_spent_budget(sync_run):
    run = sync_run
    steps = run_rows(run.run_dir, "rl", "steps")
    # the calm steps before the faults and one under each but the last: a spent budget masks every
    # sample under failure_policy mask, so no further batch can fill: the loop stops, saying so
    assert len(steps) == SYNC_CALM_STEPS + len(JUDGE_FAULTS) - 1
    assert [sync_run.fault_at_step[r["step"]] for r in steps[SYNC_CALM_STEPS:]] == [f for f, _ in JUDGE_FAULTS[:-1]]
    events = read_events(RunDir(str(run.run_dir)))
    assert any(e["actor"] == "stopped" and "judge budget is spent" in e["detail"] for e in events)


def test_no_failed_verdict_becomes_a_zero(sync_run):
    log = [r for r in run_rows(sync_run.run_dir, "rl", "trajectories") if r["role"] == "policy"]
    statuses = {r["judge_status"] for r in log}
    assert {"ok", "http_error", "timeout", "invalid_output", "budget_exhausted"} <= statuses, statuses
    assert statuses & {"rate_limited", "http_error"}
    for r in log:
        if r["judge_status"] != "ok":
            assert r["e_judge"] is None and r["r_total"] is None and r["masked"], r["sample_id"]
            assert r["fate"] in ("masked", "discarded")
        if r["fate"] == "trained":
            assert r["judge_status"] == "ok" and r["e_judge"] is not None


def test_the_masked_share_is_reported_per_step_and_alerts_past_the_threshold(sync_run):
    run = sync_run
    steps = run_rows(run.run_dir, "rl", "steps")
    share = {r["step"]: r["masked"] / (r["samples"] + r["masked"]) for r in steps}
    by_fault = {sync_run.fault_at_step.get(s, "none"): v for s, v in share.items()}
    assert by_fault["5xx burst"] > ALERT_SHARE and by_fault["malformed JSON"] > ALERT_SHARE
    assert by_fault["none"] == 0.0 and by_fault["slow answers"] <= ALERT_SHARE
    alerts = [e for e in read_events(RunDir(str(run.run_dir))) if e["actor"] == "masked_share"]
    alerted_steps = {e["step"] for e in alerts}
    # an alert of the interval that trained step s carries the learner version s - 1
    for s, v in share.items():
        if v > ALERT_SHARE + 0.1:
            assert s - 1 in alerted_steps, (s, v, alerted_steps)
        elif v < ALERT_SHARE - 0.1:
            assert s - 1 not in alerted_steps, (s, v, alerted_steps)
    # the spent budget alerts although no step completes under it
    assert any("budget_exhausted" in e["detail"] for e in alerts)
    ledger = run_rows(run.run_dir, "rl", "ledger")
    assert len(ledger) == len({r["sample_id"] for r in ledger})
    assert sum(r["fate"] == "trained" for r in ledger) == len(steps) * run.cfg.learner.batch_size
