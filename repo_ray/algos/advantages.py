"""Advantage estimators, picked by name (`learner.ppo.advantage_estimator`; grpo uses "grpo").

Each trajectory is one agent turn: its scalar reward sits on the last response token,
the episode ends there, and no credit flows across turns (DESIGN.md §6).

The registry (as verl's `register_adv_est`) maps a name to the estimator's math and to
how it reads the one typed input every estimator gets (`AdvantageInputs`), so the learner
calls `estimate_advantages(name, inputs)` whatever the estimator.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

ADV_ESTIMATORS: dict[str, Callable[..., object]] = {}
_APPLY: dict[str, Callable[[AdvantageInputs], AdvantageOutput]] = {}
_NEEDS_VALUES: set[str] = set()


@dataclass(frozen=True)
class AdvantageInputs:
    """What an estimator may read for one micro-batch of rows of a global batch.

    token_rewards, mask: [b, T]; values: [b, T] (None without a critic); rows: [b] long,
    these rows' indices in the global batch; batch_scores: [B] and batch_group_ids: [B],
    the whole global batch (a GRPO group may span micro-batches and ranks)."""

    token_rewards: torch.Tensor
    mask: torch.Tensor
    values: torch.Tensor | None
    rows: torch.Tensor
    batch_scores: torch.Tensor
    batch_group_ids: Sequence[Hashable]
    gamma: float = 1.0
    lam: float = 1.0
    std_normalize: bool = True


class AdvantageOutput(NamedTuple):
    advantages: torch.Tensor  # [b, T], 0 where mask == 0
    returns: torch.Tensor | None  # [b, T] value targets; None for a critic-free estimator


def register_adv_est(
    name: str, apply: Callable[[AdvantageInputs], AdvantageOutput] | None = None, needs_values: bool = False
) -> Callable[[Callable], Callable]:
    """Decorator registering an advantage estimator under `name` (a name is registered once).

    `apply` reads `AdvantageInputs` for it (what `estimate_advantages` calls);
    `needs_values`: it bootstraps from a value model (repo / ppo train one for it)."""

    def decorator(fn: Callable) -> Callable:
        if name in ADV_ESTIMATORS:
            raise ValueError(f"advantage estimator {name!r} is already registered")
        ADV_ESTIMATORS[name] = fn
        if apply is not None:
            _APPLY[name] = apply
        if needs_values:
            _NEEDS_VALUES.add(name)
        return fn

    return decorator


def get_adv_estimator(name: str) -> Callable[..., object]:
    """The advantage estimator registered as `name`; KeyError naming the known ones otherwise."""
    if name not in ADV_ESTIMATORS:
        raise KeyError(f"unknown advantage estimator {name!r}; known: {', '.join(sorted(ADV_ESTIMATORS))}")
    return ADV_ESTIMATORS[name]


def estimator_needs_values(name: str) -> bool:
    get_adv_estimator(name)
    return name in _NEEDS_VALUES


def estimate_advantages(name: str, inputs: AdvantageInputs) -> AdvantageOutput:
    """Advantages (and value targets) of one micro-batch by the estimator registered as `name`."""
    get_adv_estimator(name)
    if name not in _APPLY:
        raise KeyError(f"advantage estimator {name!r} was registered without an input reader")
    if name in _NEEDS_VALUES and inputs.values is None:
        raise ValueError(f"advantage estimator {name!r} needs value predictions")
    return _APPLY[name](inputs)


def _gae_apply(x: AdvantageInputs) -> AdvantageOutput:
    return AdvantageOutput(*compute_gae(x.token_rewards, x.values, x.mask, x.gamma, x.lam))


def _grpo_apply(x: AdvantageInputs) -> AdvantageOutput:
    # Group statistics over the whole global batch, then this micro-batch's rows.
    scores = x.batch_scores
    ones = torch.ones(len(x.batch_group_ids), 1, device=scores.device)
    per_row = grpo_advantages(scores, x.batch_group_ids, ones, x.std_normalize)[:, 0]
    return AdvantageOutput(per_row[x.rows.to(scores.device)].to(x.mask.device)[:, None] * x.mask, None)


def terminal_rewards(scores: torch.Tensor | Sequence[float], mask: torch.Tensor) -> torch.Tensor:
    """Token-level rewards with each sample's scalar reward on its last mask == 1 token.

    Args:
        scores: [B] one reward per sample (agent turn).
        mask: [B, T] response mask.

    Returns:
        [B, T], zero everywhere but the last valid token of each row (a row with no valid
        token is all zero: it has nowhere to carry its reward and no token to train).
    """
    scores = torch.as_tensor(scores, device=mask.device)
    if not scores.is_floating_point():
        scores = scores.float()
    valid = mask.bool()
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(valid)
    last = torch.where(valid, positions, -1).max(dim=-1).values  # [B]
    rewards = torch.zeros(valid.shape, dtype=scores.dtype, device=mask.device)
    has_token = last >= 0
    rows = torch.arange(valid.shape[0], device=mask.device)[has_token]
    rewards[rows, last[has_token]] = scores[has_token]
    return rewards


@register_adv_est("gae", _gae_apply, needs_values=True)
@torch.no_grad()
def compute_gae(
    token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the valid tokens of each turn.

    Runs the reverse-time recursion
        delta_t = r_t + gamma * V_next - V_t,   A_t = delta_t + gamma * lam * A_next
    over mask == 1 positions only: padding is skipped, so V_next and A_next come from the
    next valid token. After a turn's last token V_next = 0 (the episode ends there).

    Args:
        token_rewards: [B, T], e.g. from `terminal_rewards`.
        values: [B, T] value predictions V_t.
        mask: [B, T] response mask.
        gamma: discount; lam: GAE lambda.

    Returns:
        (advantages [B, T], returns [B, T]) with returns = advantages + values; both 0 where mask == 0.
    """
    valid = mask.bool()
    next_value = torch.zeros_like(values[:, 0])
    next_adv = torch.zeros_like(values[:, 0])
    advantages = torch.zeros_like(values)
    for t in reversed(range(values.shape[1])):
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        next_value = torch.where(valid[:, t], values[:, t], next_value)
        next_adv = torch.where(valid[:, t], adv, next_adv)
        advantages[:, t] = torch.where(valid[:, t], adv, torch.zeros_like(adv))
    returns = torch.where(valid, advantages + values, torch.zeros_like(values))
    return advantages, returns


@register_adv_est("grpo", _grpo_apply)
@torch.no_grad()
def grpo_advantages(
    scores: torch.Tensor | Sequence[float],
    group_ids: Sequence[Hashable] | torch.Tensor,
    mask: torch.Tensor,
    std_normalize: bool = True,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Group-relative advantages: (r - group mean) / (group std + eps), on every valid token.

    The group std is the sample std (Bessel-corrected, n - 1), as in verl and TRL. A group
    of one sample has nothing to be relative to: its advantage is 0. A group whose scores
    are all equal also gets 0.

    Args:
        scores: [B] one reward per sample.
        group_ids: [B] group of each sample (e.g. the scenario and turn it answers), a
            list of hashables or a LongTensor.
        mask: [B, T] response mask.
        std_normalize: divide by the group std (False: mean-centre only, as in Dr. GRPO).
        eps: added to the std.

    Returns:
        [B, T]: each sample's advantage broadcast over its mask == 1 tokens, 0 elsewhere.
    """
    scores = torch.as_tensor(scores, device=mask.device)
    if not scores.is_floating_point():
        scores = scores.float()
    if isinstance(group_ids, torch.Tensor):
        group_index = torch.unique(group_ids, return_inverse=True)[1].to(mask.device)
    else:
        ids: dict[Hashable, int] = {}
        group_index = torch.tensor([ids.setdefault(g, len(ids)) for g in group_ids], device=mask.device)
    if not (scores.shape[0] == group_index.shape[0] == mask.shape[0]):
        raise ValueError(
            f"scores ({scores.shape[0]}), group_ids ({group_index.shape[0]}) and mask ({mask.shape[0]}) "
            "differ in length"
        )
    adv = torch.zeros_like(scores)
    for g in group_index.unique():
        members = group_index == g
        group = scores[members]
        if group.numel() < 2:
            continue
        centred = group - group.mean()
        adv[members] = centred / (group.std(unbiased=True) + eps) if std_normalize else centred
    return torch.where(mask.bool(), adv[:, None], torch.zeros((), dtype=adv.dtype, device=adv.device))
