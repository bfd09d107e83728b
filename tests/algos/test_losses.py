"""PPO, value, KL, entropy, DPO, Bradley–Terry and logprob math, pinned to hand-computed numbers (CPU only)."""

import math

import pytest
import torch

from repo_ray.algos import (
    POLICY_LOSSES,
    behaviour_importance_weights,
    bradley_terry_loss,
    dpo_loss,
    entropy_from_logits,
    get_policy_loss,
    kl_estimate,
    ppo_policy_loss,
    register_policy_loss,
    sequence_logprobs,
    value_loss,
)

LN_1_5 = 0.4054651081081644  # ln 1.5
LN_0_5 = -0.6931471805599453  # ln 0.5


def _ppo_case():
    # tokens: (A=+1, ratio 1.5) clipped to 1.2 | (A=-1, ratio 0.5) clipped to 0.8
    #         (A=+1, ratio 0.5) unclipped       | (A=-1, ratio 1.5) unclipped | padding
    logprobs = torch.tensor([[LN_1_5, LN_0_5, LN_0_5, LN_1_5, 3.0]], requires_grad=True)
    old = torch.zeros(1, 5)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    return logprobs, old, adv, mask


def test_ppo_clips_both_ways_and_counts_clipped_tokens():
    logprobs, old, adv, mask = _ppo_case()
    out = ppo_policy_loss(logprobs, old, adv, mask, clip_eps=0.2)
    # per token: max(-1.5, -1.2) = -1.2, max(0.5, 0.8) = 0.8, max(-0.5, -0.8) = -0.5, max(1.5, 1.2) = 1.5
    assert out.loss.item() == pytest.approx((-1.2 + 0.8 - 0.5 + 1.5) / 4)
    assert out.clip_fraction.item() == pytest.approx(0.5)
    # k3 per token: ratio 1.5 -> 0.5 - ln 1.5 = 0.0945349, ratio 0.5 -> -0.5 + ln 2 = 0.1931472
    assert out.approx_kl.item() == pytest.approx(0.1438410, abs=1e-6)


def test_ppo_gradient_flows_only_through_unclipped_tokens():
    logprobs, old, adv, mask = _ppo_case()
    ppo_policy_loss(logprobs, old, adv, mask, clip_eps=0.2).loss.backward()
    # d(-A * ratio)/d logp = -A * ratio, over 4 valid tokens: -0.5 / 4 and 1.5 / 4
    assert torch.allclose(logprobs.grad, torch.tensor([[0.0, 0.0, -0.125, 0.375, 0.0]]))


def test_ppo_on_policy_loss_is_minus_mean_advantage_with_nothing_clipped():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5]])
    out = ppo_policy_loss(logprobs, logprobs.clone(), torch.tensor([[2.0, -1.0, 0.5]]), torch.ones(1, 3), 0.2)
    assert out.loss.item() == pytest.approx(-0.5)
    assert out.clip_fraction.item() == 0.0
    assert out.approx_kl.item() == 0.0


def test_ppo_approx_kl_is_k3_not_the_mean_log_ratio():
    logprobs = torch.full((1, 2), LN_1_5)
    out = ppo_policy_loss(logprobs, torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1, 2), clip_eps=0.2)
    assert out.approx_kl.item() == pytest.approx(0.0945349, abs=1e-6)  # 0.5 - ln 1.5; k1 would be -0.405


def test_value_loss_clips_around_old_value():
    # token 1: V 0.5, old 0, R 1 -> clipped V 0.2: max(0.25, 0.64) = 0.64, clipped branch taken
    # token 2: V 0.1 within the clip: max(0.81, 0.81) = 0.81
    # token 3: V -0.5, old 0, R 0 -> clipped -0.2: max(0.25, 0.04) = 0.25, unclipped
    values = torch.tensor([[0.5, 0.1, -0.5, 42.0]])
    old = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    returns = torch.tensor([[1.0, 1.0, 0.0, -42.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    out = value_loss(values, old, returns, mask, clip_eps=0.2)
    assert out.loss.item() == pytest.approx(0.5 * (0.64 + 0.81 + 0.25) / 3)
    assert out.clip_fraction.item() == pytest.approx(1 / 3)
    loss, clip_fraction = out  # unpacks as a pair
    assert loss is out.loss and clip_fraction is out.clip_fraction


def test_kl_estimators_by_hand():
    logprobs = torch.tensor([[0.0, 0.0, -1.0]])
    ref = torch.tensor([[LN_0_5, math.log(2.0), -1.0]])
    assert torch.allclose(kl_estimate(logprobs, ref, "k1"), torch.tensor([[0.6931472, -0.6931472, 0.0]]))
    assert torch.allclose(kl_estimate(logprobs, ref, "k2"), torch.tensor([[0.2402265, 0.2402265, 0.0]]))
    assert torch.allclose(kl_estimate(logprobs, ref, "k3"), torch.tensor([[0.1931472, 0.3068528, 0.0]]))


def test_unknown_kl_estimator_is_an_error():
    with pytest.raises(ValueError, match="known: k1, k2, k3"):
        kl_estimate(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


def test_entropy_from_logits_by_hand():
    inf = math.inf
    logits = torch.tensor(
        [
            [[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -inf, -inf]],
            [[5.0, -inf, -inf, -inf], [1.0, 1.0, -inf, -inf]],
        ]
    )
    # uniform over 4: ln 4; p = (1/4, 3/4): 0.5623351; one token: 0; uniform over 2: ln 2
    assert torch.allclose(entropy_from_logits(logits), torch.tensor([[1.3862944, 0.5623351], [0.0, 0.6931472]]))


def test_dpo_loss_at_zero_margin_is_log_two():
    lp = torch.tensor([-3.0, -5.0])
    out = dpo_loss(lp, lp - 1.0, lp, lp - 1.0, beta=0.1)
    assert out.loss.item() == pytest.approx(0.6931472)
    assert out.accuracy.item() == 0.0  # ties count as wrong


def test_dpo_loss_for_a_known_margin():
    # chosen: policy -1 vs ref -3 -> +2; rejected: policy -2 vs ref -1 -> -1; margin 0.1 * 3 = 0.3
    out = dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-3.0]), torch.tensor([-1.0]), beta=0.1)
    assert out.loss.item() == pytest.approx(0.5543552)  # ln(1 + e^-0.3)
    assert out.chosen_rewards.tolist() == pytest.approx([0.2])
    assert out.rejected_rewards.tolist() == pytest.approx([-0.1])
    assert out.accuracy.item() == 1.0


def test_dpo_rewards_are_detached_and_loss_has_gradient():
    pc = torch.tensor([-1.0], requires_grad=True)
    out = dpo_loss(pc, torch.tensor([-2.0]), torch.tensor([-3.0]), torch.tensor([-1.0]), beta=0.1)
    out.loss.backward()
    assert not out.chosen_rewards.requires_grad
    # d/dpc of -logsigmoid(0.1 * (pc + 3 - (-2 + 1))) = -0.1 * sigmoid(-0.3) = -0.1 * 0.4255575
    assert pc.grad.item() == pytest.approx(-0.04255575)


def test_bradley_terry_loss_by_hand():
    out = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    # margins +1 and -1: ln(1 + e^-1) = 0.3132617, ln(1 + e) = 1.3132617
    assert out.loss.item() == pytest.approx(0.8132617)
    assert out.accuracy.item() == 0.5
    assert bradley_terry_loss(torch.tensor([0.3]), torch.tensor([0.3])).loss.item() == pytest.approx(0.6931472)


def test_sequence_logprobs_gathers_labels_and_zeroes_padding():
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)], [7.0, 9.0]]])
    labels = torch.tensor([[1, 0, -100]])  # padding label would be an invalid index
    mask = torch.tensor([[1, 1, 0]])
    out = sequence_logprobs(logits, labels, mask)
    assert torch.allclose(out, torch.tensor([[-0.2876821, -1.3862944, 0.0]]))  # ln 0.75, ln 0.25


def test_sequence_logprobs_applies_temperature():
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])
    out = sequence_logprobs(logits, torch.tensor([[0, 1]]), torch.ones(1, 2), temperature=2.0)
    # logits / 2 -> p = (1, sqrt 3) / (1 + sqrt 3)
    assert torch.allclose(out, torch.tensor([[-1.0050525, -0.4557464]]))


def test_sequence_logprobs_is_stable_for_huge_logits_and_upcasts_half_precision():
    logits = torch.tensor([[[1000.0, 0.0], [1000.0, 0.0]]], dtype=torch.bfloat16)
    out = sequence_logprobs(logits, torch.tensor([[0, 1]]), torch.ones(1, 2))
    assert out.dtype == torch.float32
    assert out.tolist() == [[0.0, -1000.0]]


def test_policy_losses_are_found_by_name():
    assert get_policy_loss("ppo_clip") is ppo_policy_loss
    assert "ppo_clip" in POLICY_LOSSES


def test_unknown_policy_loss_error_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown policy loss 'gspo'; known: ppo_clip"):
        get_policy_loss("gspo")


def test_policy_loss_name_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_policy_loss("ppo_clip")(lambda: None)


def _weights_case():
    # proximal vs behaviour: equal | 2x more likely now | 10x more likely now | padding
    prox = torch.tensor([[0.0, math.log(2.0), math.log(10.0), 0.0]])
    behaviour = torch.tensor([[0.0, 0.0, 0.0, 5.0]])
    return prox, behaviour, torch.tensor([[1, 1, 1, 0]])


@pytest.mark.parametrize(("correction", "weights", "capped"), [
    ("none", [1.0, 1.0, 1.0, 0.0], [False, False, False, False]),
    ("tis", [1.0, 2.0, 5.0, 0.0], [False, False, True, False]),  # truncated at the cap
    ("decoupled", [1.0, 2.0, 0.0, 0.0], [False, False, True, False]),  # over the cap: dropped
])
def test_behaviour_importance_weights_by_hand(correction, weights, capped):
    out = behaviour_importance_weights(*_weights_case(), correction=correction, cap=5.0)
    assert torch.allclose(out.weights, torch.tensor([weights]), atol=1e-6)
    assert out.capped.tolist() == [capped]
    assert torch.allclose(out.raw, torch.tensor([[1.0, 2.0, 10.0, 1.0]]), atol=1e-5)  # uncapped, 1 off the mask


def test_on_policy_weights_are_exactly_one_and_leave_the_ppo_loss_unchanged():
    logprobs, old, adv, mask = _ppo_case()
    w = behaviour_importance_weights(old, old.clone(), mask, "decoupled", 5.0)
    assert bool((w.weights[mask.bool()] == 1.0).all()) and not w.capped.any()
    plain = ppo_policy_loss(logprobs, old, adv, mask, 0.2)
    weighted = ppo_policy_loss(logprobs, old, adv, mask, 0.2, weights=w.weights)
    assert weighted.loss.item() == plain.loss.item()


def test_ppo_loss_weights_each_token_by_its_importance_weight():
    logprobs, old, adv, mask = _ppo_case()
    # per-token losses of the case: -1.2, 0.8, -0.5, 1.5 (see _ppo_case)
    w = torch.tensor([[2.0, 0.0, 1.0, 0.5, 7.0]])
    out = ppo_policy_loss(logprobs, old, adv, mask, 0.2, weights=w)
    assert float(out.loss) == pytest.approx((2.0 * -1.2 + 0.0 + -0.5 + 0.5 * 1.5) / 4, abs=1e-6)


def test_unknown_off_policy_correction_is_an_error():
    with pytest.raises(ValueError, match="unknown off-policy correction 'vtrace'; known: none, tis, decoupled"):
        behaviour_importance_weights(*_weights_case(), correction="vtrace")
