"""record() dispatches by the series' kind, rejects call-site bugs and never raises for a
metrics failure; RewardMeter turns a RewardResult into its series (CPU only, no Ray)."""

from __future__ import annotations

import pytest

from repo_ray import telemetry
from repo_ray.telemetry import METRICS, RewardMeter, record
from repo_ray.types import RewardResult, SourceResult, SourceStatus


class FakeSeries:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, float, dict | None]] = []
        self.fail = fail

    def _call(self, op, value, tags):
        if self.fail:
            raise RuntimeError("no metrics agent")
        self.calls.append((op, value, tags))

    def inc(self, value, tags=None):
        self._call("inc", value, tags)

    def set(self, value, tags=None):
        self._call("set", value, tags)

    def observe(self, value, tags=None):
        self._call("observe", value, tags)


@pytest.fixture
def series(monkeypatch):
    fakes = {name: FakeSeries() for name in METRICS}
    monkeypatch.setattr(telemetry, "_instances", fakes)
    return fakes


def test_record_counts_sets_or_observes_by_kind(series):
    record("repo_ray_samples_total", 3, stage="rollout")
    record("repo_ray_queue_depth", 7, queue="reward")
    record("repo_ray_learner_step_seconds", 0.5)
    assert series["repo_ray_samples_total"].calls == [("inc", 3.0, {"stage": "rollout"})]
    assert series["repo_ray_queue_depth"].calls == [("set", 7.0, {"queue": "reward"})]
    assert series["repo_ray_learner_step_seconds"].calls == [("observe", 0.5, None)]


def test_a_zero_count_adds_nothing(series):
    record("repo_ray_tokens_total", 0, worker="w0")
    assert series["repo_ray_tokens_total"].calls == []


def test_unknown_names_and_wrong_tags_are_bugs_that_raise(series):
    with pytest.raises(KeyError, match="repo_ray_nope"):
        record("repo_ray_nope")
    with pytest.raises(ValueError, match="tag keys"):
        record("repo_ray_samples_total", 1)  # its tag `stage` is missing
    with pytest.raises(ValueError, match="tag keys"):
        record("repo_ray_staleness", 1, worker="w0")


def test_a_failing_metrics_backend_never_raises(monkeypatch, caplog):
    monkeypatch.setattr(telemetry, "_instances", {"repo_ray_staleness": FakeSeries(fail=True)})
    monkeypatch.setattr(telemetry, "_failed", set())
    with caplog.at_level("DEBUG", logger="repo_ray.telemetry"):
        record("repo_ray_staleness", 2)
        record("repo_ray_staleness", 3)
    assert [r.message for r in caplog.records].count("metric repo_ray_staleness not recorded: RuntimeError: "
                                                     "no metrics agent") == 1  # logged once per series


def test_reward_meter_records_latency_failures_masks_and_rolling_means(series):
    meter = RewardMeter(window=2)
    ok = {"rm": SourceResult(1.0, SourceStatus.OK, 0.1), "judge": SourceResult(None, SourceStatus.TIMEOUT, 2.0)}
    meter.record(RewardResult("s1", 1.0, None, 0.0, 0.0, 1.0, ok, masked=False))
    meter.record(RewardResult("s2", 3.0, None, 0.0, 0.0, 3.0, {"rm": SourceResult(3.0, SourceStatus.OK, 0.2)}, False))
    meter.record(RewardResult("s3", None, None, None, None, None, {"rm": SourceResult(None, SourceStatus.ERROR, 0.3)},
                              masked=True, reason="rm error: actor died"))
    assert [c[1:] for c in series["repo_ray_source_latency_seconds"].calls] == [
        (0.1, {"source": "rm"}), (2.0, {"source": "judge"}), (0.2, {"source": "rm"}), (0.3, {"source": "rm"})]
    assert [c[2] for c in series["repo_ray_source_failures_total"].calls] == [
        {"source": "judge", "status": "timeout"}, {"source": "rm", "status": "error"}]
    assert series["repo_ray_masked_total"].calls == [("inc", 1.0, {"reason": "rm error"})]
    assert [c[1] for c in series["repo_ray_samples_total"].calls] == [1.0, 1.0, 1.0]
    total = [c[1] for c in series["repo_ray_reward_recent"].calls if c[2] == {"source": "total"}]
    assert total == [1.0, 2.0]  # rolling mean of the last two unmasked totals
