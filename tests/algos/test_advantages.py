"""Terminal rewards, GAE and GRPO advantages, pinned to hand-computed numbers (CPU only)."""

import pytest
import torch

from repo_ray.algos import (
    ADV_ESTIMATORS,
    AdvantageInputs,
    compute_gae,
    estimate_advantages,
    estimator_needs_values,
    get_adv_estimator,
    grpo_advantages,
    register_adv_est,
    terminal_rewards,
)


def test_terminal_rewards_puts_each_score_on_the_last_valid_token():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1], [0, 1, 1, 0]])
    out = terminal_rewards(torch.tensor([2.0, -1.0, 0.5, 3.0]), mask)
    expected = torch.tensor(
        [[0.0, 0.0, 2.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5], [0.0, 0.0, 3.0, 0.0]]
    )
    assert torch.equal(out, expected)


def test_terminal_rewards_row_without_valid_token_is_all_zero():
    mask = torch.tensor([[0, 0, 0], [1, 1, 0]])
    out = terminal_rewards([4.0, 1.5], mask)
    assert torch.equal(out, torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.5, 0.0]]))


def test_gae_with_gamma_and_lambda_one_is_reward_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 2.0, 0.0]])
    values = torch.tensor([[0.5, 1.0, 1.5, 99.0]])  # last position is padding
    mask = torch.tensor([[1, 1, 1, 0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[1.5, 1.0, 0.5, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[2.0, 2.0, 2.0, 0.0]]))


def test_gae_three_tokens_with_discount_by_hand():
    # gamma 0.9, lam 0.8, reward 1 on the last token, V = 0.5, 0.6, 0.7, V after the turn = 0
    # t2: delta = 1 - 0.7 = 0.3,               A2 = 0.3
    # t1: delta = 0.9 * 0.7 - 0.6 = 0.03,      A1 = 0.03 + 0.72 * 0.3 = 0.246
    # t0: delta = 0.9 * 0.6 - 0.5 = 0.04,      A0 = 0.04 + 0.72 * 0.246 = 0.21712
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = compute_gae(rewards, values, torch.ones(1, 3), gamma=0.9, lam=0.8)
    assert torch.allclose(adv, torch.tensor([[0.21712, 0.246, 0.3]]))
    assert torch.allclose(ret, torch.tensor([[0.71712, 0.846, 1.0]]))


def test_gae_skips_padding_inside_and_after_the_turn():
    # mask hole at t1: t0 bootstraps from V2, not from the padded V1 = 99
    # t2: A2 = 1 - 0.4 = 0.6; t0: delta = 0.5 * 0.4 - 0.2 = 0, A0 = 0 + 0.5 * 1 * 0.6 = 0.3
    rewards = torch.tensor([[0.0, 5.0, 1.0, 7.0]])
    values = torch.tensor([[0.2, 99.0, 0.4, -8.0]])
    mask = torch.tensor([[1, 0, 1, 0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=0.5, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.3, 0.0, 0.6, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[0.5, 0.0, 1.0, 0.0]]))


def test_gae_rows_are_independent_episodes():
    rewards = torch.tensor([[0.0, 3.0], [-1.0, 0.0]])
    values = torch.tensor([[1.0, 2.0], [0.5, 0.25]])
    mask = torch.tensor([[1, 1], [1, 0]])
    adv, _ = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[2.0, 1.0], [-1.5, 0.0]]))


def test_gae_carries_no_gradient():
    values = torch.tensor([[0.5, 0.6]], requires_grad=True)
    adv, ret = compute_gae(torch.tensor([[0.0, 1.0]]), values, torch.ones(1, 2), gamma=1.0, lam=1.0)
    assert not adv.requires_grad and not ret.requires_grad


def test_grpo_two_groups_and_a_singleton():
    scores = torch.tensor([1.0, 5.0, 2.0, 4.0, 3.0, 7.0])
    groups = ["a", "b", "a", "c", "a", "b"]
    mask = torch.tensor([[1, 1, 0]] * 6)
    adv = grpo_advantages(scores, groups, mask)
    # a: 1, 2, 3 -> mean 2, sample std 1; b: 5, 7 -> mean 6, sample std sqrt(2); c: alone -> 0
    per_sample = torch.tensor([-1.0, -0.7071068, 0.0, 0.0, 1.0, 0.7071068])
    assert torch.allclose(adv[:, 0], per_sample, atol=1e-5)
    assert torch.allclose(adv[:, 1], per_sample, atol=1e-5)
    assert torch.equal(adv[:, 2], torch.zeros(6))


def test_grpo_without_std_normalisation_only_centres():
    adv = grpo_advantages([1.0, 5.0, 2.0, 4.0, 3.0, 7.0], torch.tensor([0, 1, 0, 2, 0, 1]), torch.ones(6, 1), False)
    assert torch.allclose(adv[:, 0], torch.tensor([-1.0, -1.0, 0.0, 0.0, 1.0, 1.0]))


def test_grpo_group_with_equal_scores_gets_zero():
    adv = grpo_advantages([2.0, 2.0, 2.0], [7, 7, 7], torch.ones(3, 2))
    assert torch.equal(adv, torch.zeros(3, 2))


def test_grpo_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        grpo_advantages([1.0, 2.0], ["a"], torch.ones(2, 2))


def test_estimators_are_found_by_name():
    assert get_adv_estimator("gae") is compute_gae
    assert get_adv_estimator("grpo") is grpo_advantages
    assert {"gae", "grpo"} <= set(ADV_ESTIMATORS)


def test_unknown_estimator_error_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown advantage estimator 'vtrace'; known: gae, grpo"):
        get_adv_estimator("vtrace")


def test_estimator_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_adv_est("gae")(lambda: None)


def _inputs(token_rewards, mask, values, rows, scores, groups, **kw):
    return AdvantageInputs(token_rewards, mask, values, torch.as_tensor(rows), torch.as_tensor(scores), groups, **kw)


def test_estimate_advantages_by_name_runs_gae_on_the_micro_batch_with_its_values():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    out = estimate_advantages("gae", _inputs(rewards, torch.ones(1, 3), values, [0], [1.0], ["a"], gamma=0.9, lam=0.8))
    assert torch.allclose(out.advantages, torch.tensor([[0.21712, 0.246, 0.3]]))
    assert torch.allclose(out.returns, torch.tensor([[0.71712, 0.846, 1.0]]))
    assert estimator_needs_values("gae") and not estimator_needs_values("grpo")


def test_estimate_advantages_by_name_runs_grpo_over_the_whole_batch_and_picks_the_rows():
    # Global batch of 4 in two groups; the micro-batch holds rows 3 and 0 only.
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    out = estimate_advantages("grpo", _inputs(torch.zeros(2, 3), mask, None, [3, 0], [1.0, 5.0, 3.0, 9.0],
                                              ["a", "b", "a", "b"]))
    whole = grpo_advantages([1.0, 5.0, 3.0, 9.0], ["a", "b", "a", "b"], torch.ones(4, 1))[:, 0]
    assert torch.allclose(out.advantages, torch.stack([whole[3] * mask[0], whole[0] * mask[1]]))
    assert out.returns is None and float(out.advantages[0, 0]) > 0 > float(out.advantages[1, 0])


def test_gae_without_values_is_an_error_naming_the_estimator():
    with pytest.raises(ValueError, match="'gae' needs value predictions"):
        estimate_advantages("gae", _inputs(torch.zeros(1, 2), torch.ones(1, 2), None, [0], [1.0], ["a"]))
