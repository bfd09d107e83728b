"""Combining source answers: enhancement, masking and the partial policy, with hand values."""

import pytest

from repo_ray.config import RewardConfig
from repo_ray.types import SourceResult
from reward_actors.combine import combine_sources

OK = "ok"


def src(score, status=OK, detail=""):
    return SourceResult(score if status == OK else None, status, 0.01, detail)


def test_all_sources_answered_enhances_with_clipped_sum():
    r = combine_sources("s", {"rm": src(2.0), "judge": src(80.0), "rules": src(-30.0)}, RewardConfig())
    assert (r.e_judge, r.e_func, r.e_enh) == (80.0, -30.0, 50.0)
    assert r.r_total == pytest.approx(3.0) and not r.masked and r.reason == ""
    r = combine_sources("s", {"rm": src(-2.0), "judge": src(90.0), "rules": src(40.0)}, RewardConfig())
    assert r.e_enh == 100.0 and r.r_total == pytest.approx(0.0)  # clipped sum: penalty fully removed, no flip


def test_rm_failure_always_masks_even_under_partial():
    r = combine_sources("s", {"rm": src(None, "timeout"), "judge": src(10.0), "rules": src(0.0)},
                        RewardConfig(failure_policy="partial"))
    assert r.masked and r.r_total is None and r.reason == "rm timeout" and r.e_judge == 10.0


def test_judge_failure_masks_by_default_and_is_partial_on_request():
    sources = {"rm": src(1.0), "judge": src(None, "rate_limited", "429 x5"), "rules": src(-50.0)}
    masked = combine_sources("s", sources, RewardConfig())
    assert masked.masked and masked.reason == "judge rate_limited: 429 x5" and masked.r_total is None
    partial = combine_sources("s", sources, RewardConfig(failure_policy="partial"))
    assert not partial.masked and partial.e_judge is None and partial.e_enh == -50.0
    assert partial.r_total == pytest.approx(0.5) and partial.reason == "partial: judge rate_limited: 429 x5"


def test_rm_only_ablation_passes_r_model_through():
    r = combine_sources("s", {"rm": src(-1.5)}, RewardConfig(sources=["rm"]))
    assert r.r_total == -1.5 and r.e_enh is None and not r.masked


def test_disabled_source_answers_are_ignored():
    r = combine_sources("s", {"rm": src(1.0), "rules": src(-100.0), "judge": src(50.0)},
                        RewardConfig(sources=["rm", "judge"]))
    assert r.e_enh == 50.0 and r.r_total == pytest.approx(1.5)


def test_missing_enabled_source_is_a_failure_not_a_zero():
    r = combine_sources("s", {"rm": src(1.0), "judge": src(20.0)}, RewardConfig())
    assert r.masked and r.reason == "rules missing"
