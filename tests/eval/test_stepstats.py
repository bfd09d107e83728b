"""Per-step batch statistics the driver writes into the steps table."""

from __future__ import annotations

import math

import pytest

from repo_ray.eval.stepstats import STEP_STAT_KEYS, batch_stats, distinct_n
from repo_ray.types import Message, RewardResult, Role, SourceResult, SourceStatus, Trajectory


def traj(sid: str, text: str, n_tokens: int) -> Trajectory:
    return Trajectory(sid, "sc", 0, [Message(Role.SYSTEM, "s")], text, [1, 2], list(range(3, 3 + n_tokens)),
                      [-0.5] * n_tokens, [1] * n_tokens, "ask", 0)


def reward(sid: str, r_model, e_judge, e_func, masked=False) -> RewardResult:
    ok = SourceResult(1.0, SourceStatus.OK)
    if masked:
        return RewardResult(sid, r_model, e_judge, e_func, None, None, {"rm": ok}, True, "judge timeout")
    e_enh = (e_judge or 0.0) + (e_func or 0.0)
    return RewardResult(sid, r_model, e_judge, e_func, e_enh, r_model + abs(r_model) * e_enh / 100, {"rm": ok}, False)


def test_batch_stats_means_over_unmasked_samples_and_counts_the_masked():
    ts = [traj("a", "a b a b", 2), traj("b", "a b", 3), traj("c", "x y z", 4)]
    rs = [reward("a", 1.0, 50.0, None), reward("b", 2.0, None, None), reward("c", 9.0, 9.0, 9.0, masked=True)]
    s = batch_stats(ts, rs)
    assert set(s) == set(STEP_STAT_KEYS)
    assert (s["samples"], s["masked"]) == (3, 1)
    assert s["r_model_mean"] == pytest.approx(1.5)
    assert s["r_total_mean"] == pytest.approx((1.5 + 2.0) / 2)  # 1 + 1 * 50/100, 2 + 0
    assert s["e_judge_mean"] == pytest.approx(50.0)  # a missing judge score is left out, not a 0
    assert math.isnan(s["e_func_mean"])
    assert s["response_len_mean"] == pytest.approx(3.0)  # all trajectories, the masked one too
    # tokens: a b a b | a b | x y z -> 9 unigrams, 5 distinct; bigrams ab ba ab | ab | xy yz -> 6, 4 distinct
    assert s["distinct_1"] == pytest.approx(5 / 9)
    assert s["distinct_2"] == pytest.approx(4 / 6)


def test_a_missing_reward_counts_as_masked_and_an_empty_batch_gives_nan():
    s = batch_stats([traj("a", "hi", 1)], [None])
    assert (s["samples"], s["masked"]) == (1, 1) and math.isnan(s["r_total_mean"])
    empty = batch_stats([], [])
    assert empty["samples"] == 0 and math.isnan(empty["distinct_1"]) and math.isnan(empty["response_len_mean"])


def test_distinct_n_tokenises_chinese_by_character_and_ignores_case_and_punctuation():
    assert distinct_n(["你好你好"], 1) == pytest.approx(0.5)
    assert distinct_n(["Hello, hello!"], 1) == pytest.approx(0.5)
    assert math.isnan(distinct_n(["one"], 2))


def test_rewards_must_belong_to_their_trajectories():
    with pytest.raises(ValueError, match="paired with trajectory"):
        batch_stats([traj("a", "x", 1)], [reward("b", 1.0, None, None)])
