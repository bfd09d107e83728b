"""Terminal rewards, GAE and GRPO advantages, pinned to hand-computed numbers (CPU only)."""

import pytest
import torch

from repo_ray.algos import (
    ADV_ESTIMATORS,
    compute_gae,
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
