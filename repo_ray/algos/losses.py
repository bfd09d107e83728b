"""Losses of the learner: PPO policy and value, off-policy weights, KL estimators, entropy, DPO, Bradley–Terry.

Policy losses are picked by name (`learner.ppo.policy_loss`). Token tensors are [B, T]
with a 0/1 response mask; means are over mask == 1 tokens of the whole batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from repo_ray.algos.masked import masked_mean

POLICY_LOSSES: dict[str, Callable[..., object]] = {}
KL_ESTIMATORS = ("k1", "k2", "k3")
OFF_POLICY_CORRECTIONS = ("none", "tis", "decoupled")


def register_policy_loss(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering a policy loss under `name` (a name is registered once)."""

    def decorator(fn: Callable) -> Callable:
        if name in POLICY_LOSSES:
            raise ValueError(f"policy loss {name!r} is already registered")
        POLICY_LOSSES[name] = fn
        return fn

    return decorator


def get_policy_loss(name: str) -> Callable[..., object]:
    """The policy loss registered as `name`; KeyError naming the known ones otherwise."""
    if name not in POLICY_LOSSES:
        raise KeyError(f"unknown policy loss {name!r}; known: {', '.join(sorted(POLICY_LOSSES))}")
    return POLICY_LOSSES[name]


class PolicyLossOutput(NamedTuple):
    loss: torch.Tensor  # scalar, differentiable
    clip_fraction: torch.Tensor  # scalar, share of valid tokens where the clipped branch was taken
    approx_kl: torch.Tensor  # scalar, k3 estimate of KL(old || new) over valid tokens


class ValueLossOutput(NamedTuple):
    loss: torch.Tensor  # scalar, differentiable
    clip_fraction: torch.Tensor  # scalar, share of valid tokens where the clipped value was taken


class DPOOutput(NamedTuple):
    loss: torch.Tensor  # scalar, differentiable
    chosen_rewards: torch.Tensor  # [B] beta * (policy - ref) logp of chosen, detached
    rejected_rewards: torch.Tensor  # [B] beta * (policy - ref) logp of rejected, detached
    accuracy: torch.Tensor  # scalar, share of pairs with chosen_rewards > rejected_rewards


class BradleyTerryOutput(NamedTuple):
    loss: torch.Tensor  # scalar, differentiable
    accuracy: torch.Tensor  # scalar, share of pairs scored chosen > rejected


@register_policy_loss("ppo_clip")
def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    weights: torch.Tensor | None = None,
) -> PolicyLossOutput:
    """PPO's clipped surrogate: masked mean of w * max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)).

    Args:
        logprobs: [B, T] token logprobs under the current policy (with grad).
        old_logprobs: [B, T] token logprobs of the policy the ratio is taken against: the
            behaviour policy on-policy, the proximal policy in decoupled PPO.
        advantages: [B, T].
        mask: [B, T] response mask.
        clip_eps: ratio clip.
        weights: [B, T] per-token weights, no grad (the behaviour importance weights of
            `behaviour_importance_weights`); None means 1 everywhere.

    Returns:
        PolicyLossOutput. approx_kl is Schulman's k3, mean of (ratio - 1) - log ratio, an
        unbiased, non-negative estimate of KL(old || new) (as CleanRL logs it).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    per_token = torch.maximum(unclipped, clipped)
    if weights is not None:
        per_token = per_token * weights.detach()
    loss = masked_mean(per_token, mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
    return PolicyLossOutput(loss, clip_fraction, approx_kl)


class ImportanceWeights(NamedTuple):
    weights: torch.Tensor  # [B, T] what multiplies each token's policy loss (no grad; 0 off the mask)
    raw: torch.Tensor  # [B, T] exp(proximal - behaviour) before any cap (1 off the mask)
    capped: torch.Tensor  # [B, T] bool, valid tokens where the cap changed the weight


@torch.no_grad()
def behaviour_importance_weights(
    proximal_logprobs: torch.Tensor,
    behaviour_logprobs: torch.Tensor,
    mask: torch.Tensor,
    correction: str = "decoupled",
    cap: float = 5.0,
) -> ImportanceWeights:
    """Off-policy correction for tokens sampled by an older (behaviour) policy.

    The PPO ratio is taken against the proximal policy (the learner's no-grad recompute
    before the update), so the trust region sits around the current policy; the
    mismatch between proximal and behaviour policy is corrected per token by
    w = pi_prox / pi_behav = exp(proximal - behaviour):
        none       w = 1 (the behaviour log-probs only feed the statistics)
        tis        w = min(w, cap): truncated importance sampling, as verl's rollout
                   correction (TIS, verl PR #2953; Yao et al., "Your Efficient RL
                   Framework Secretly Brings You Off-Policy RL Training", 2025)
        decoupled  w, and 0 where w > cap: decoupled PPO as in AReaL (Fu et al., 2025,
                   arXiv 2505.24298, `behav_imp_weight_cap` filters such tokens out;
                   after Hilton et al., 2021, "Batch size-invariance for policy optimization")
    Tokens where behaviour == proximal get w = 1 exactly, so on-policy data gives the
    uncorrected loss.

    proximal_logprobs, behaviour_logprobs, mask: [B, T]; cap > 1.
    """
    if correction not in OFF_POLICY_CORRECTIONS:
        raise ValueError(f"unknown off-policy correction {correction!r}; known: {', '.join(OFF_POLICY_CORRECTIONS)}")
    valid = mask.bool()
    raw = torch.where(valid, torch.exp(proximal_logprobs.float() - behaviour_logprobs.float()), 1.0)
    over = valid & (raw > cap)
    if correction == "none":
        weights, capped = torch.ones_like(raw), torch.zeros_like(valid)
    elif correction == "tis":
        weights, capped = raw.clamp(max=cap), over
    else:
        weights, capped = torch.where(over, 0.0, raw), over
    return ImportanceWeights(torch.where(valid, weights, 0.0), raw, capped)


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip_eps: float
) -> ValueLossOutput:
    """Clipped value loss: 0.5 * masked mean of max((V - R)^2, (clip(V, V_old - eps, V_old + eps) - R)^2).

    values, old_values, returns, mask: [B, T]. Returns ValueLossOutput.
    """
    values_clipped = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    unclipped = (values - returns) ** 2
    clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).to(values.dtype), mask)
    return ValueLossOutput(loss, clip_fraction)


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(policy || ref) from tokens sampled from the policy (Schulman).

    With log_r = ref_logprobs - logprobs:
        k1 = -log_r                    unbiased, can be negative
        k2 = 0.5 * log_r^2             biased, low variance, >= 0
        k3 = exp(log_r) - log_r - 1    unbiased, >= 0

    logprobs, ref_logprobs: [B, T]. Returns [B, T] (apply the mask when reducing).
    """
    log_r = ref_logprobs - logprobs
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r**2
    if kind == "k3":
        return torch.exp(log_r) - log_r - 1.0
    raise ValueError(f"unknown KL estimator {kind!r}; known: {', '.join(KL_ESTIMATORS)}")


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim. logits: [B, T, V] -> [B, T].

    Logits of -inf (banned tokens) are allowed: they contribute 0.
    """
    logp = F.log_softmax(logits, dim=-1)
    # 0 * -inf would be NaN; a banned token has p == 0, so any finite log p gives its 0 term.
    logp = logp.clamp(min=torch.finfo(logp.dtype).min)
    return -(logp.exp() * logp).sum(-1)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> DPOOutput:
    """DPO: -mean logsigmoid(beta * ((pc - rc) - (pr - rr))).

    All inputs are [B] sequence logprobs (sums over response tokens) of the chosen and
    rejected responses under the policy and the frozen reference. Returns DPOOutput;
    accuracy counts ties as wrong.
    """
    chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    loss = -F.logsigmoid(chosen - rejected).mean()
    chosen, rejected = chosen.detach(), rejected.detach()
    accuracy = (chosen > rejected).to(chosen.dtype).mean()
    return DPOOutput(loss, chosen, rejected, accuracy)


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> BradleyTerryOutput:
    """Reward-model loss on preference pairs: -mean logsigmoid(chosen - rejected).

    chosen_scores, rejected_scores: [B] scalar RM scores. accuracy counts ties as wrong.
    """
    loss = -F.logsigmoid(chosen_scores - rejected_scores).mean()
    accuracy = (chosen_scores > rejected_scores).detach().to(chosen_scores.dtype).mean()
    return BradleyTerryOutput(loss, accuracy)


def sequence_logprobs(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Token logprobs of `labels` under log_softmax(logits / temperature); 0 where mask == 0.

    Alignment is the caller's: logits[:, t] must be the distribution that predicted
    labels[:, t] (for a causal LM, the model's logits shifted one step left). Nothing is
    shifted here. Half-precision logits are upcast to float32. Labels at mask == 0 may be
    anything (e.g. -100); they are not looked up.

    Args:
        logits: [B, T, V].
        labels: [B, T] token ids.
        mask: [B, T].
        temperature: the sampling temperature (> 0), so logprobs match the rollout's.

    Returns:
        [B, T] logprobs.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    valid = mask.bool()
    logp = F.log_softmax(logits / temperature, dim=-1)
    safe_labels = torch.where(valid, labels, torch.zeros_like(labels))
    token_logp = logp.gather(-1, safe_labels.unsqueeze(-1)).squeeze(-1)
    return torch.where(valid, token_logp, torch.zeros_like(token_logp))
