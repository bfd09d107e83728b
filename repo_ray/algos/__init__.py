"""Pure torch math of REPO and its baselines (no Ray): reward enhancement, advantages, losses.

Names load on first use (PEP 562): `from repo_ray.algos.reward_enhance import ...` or
`from repo_ray.algos import enhance_reward` in a light actor (the reward pool) loads no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from repo_ray.algos.advantages import (
        ADV_ESTIMATORS,
        AdvantageInputs,
        AdvantageOutput,
        compute_gae,
        estimate_advantages,
        estimator_needs_values,
        get_adv_estimator,
        grpo_advantages,
        register_adv_est,
        terminal_rewards,
    )
    from repo_ray.algos.losses import (
        KL_ESTIMATORS,
        OFF_POLICY_CORRECTIONS,
        POLICY_LOSSES,
        BradleyTerryOutput,
        DPOOutput,
        ImportanceWeights,
        PolicyLossOutput,
        ValueLossOutput,
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
    from repo_ray.algos.masked import masked_mean, masked_sum, masked_var, masked_whiten, masked_whiten_across_ranks
    from repo_ray.algos.reward_enhance import RMNormalizer, enhance_reward, enhancement

_HOME = {
    **dict.fromkeys(("ADV_ESTIMATORS", "AdvantageInputs", "AdvantageOutput", "compute_gae", "estimate_advantages",
                     "estimator_needs_values", "get_adv_estimator", "grpo_advantages", "register_adv_est",
                     "terminal_rewards"), "advantages"),
    **dict.fromkeys(("KL_ESTIMATORS", "OFF_POLICY_CORRECTIONS", "POLICY_LOSSES", "BradleyTerryOutput", "DPOOutput",
                     "ImportanceWeights", "PolicyLossOutput", "ValueLossOutput", "behaviour_importance_weights",
                     "bradley_terry_loss", "dpo_loss", "entropy_from_logits", "get_policy_loss", "kl_estimate",
                     "ppo_policy_loss", "register_policy_loss", "sequence_logprobs", "value_loss"), "losses"),
    **dict.fromkeys(("masked_mean", "masked_sum", "masked_var", "masked_whiten", "masked_whiten_across_ranks"),
                    "masked"),
    **dict.fromkeys(("RMNormalizer", "enhance_reward", "enhancement"), "reward_enhance"),
}


def __getattr__(name: str):
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'repo_ray.algos' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"repo_ray.algos.{home}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ADV_ESTIMATORS",
    "KL_ESTIMATORS",
    "OFF_POLICY_CORRECTIONS",
    "POLICY_LOSSES",
    "AdvantageInputs",
    "AdvantageOutput",
    "BradleyTerryOutput",
    "DPOOutput",
    "ImportanceWeights",
    "PolicyLossOutput",
    "RMNormalizer",
    "ValueLossOutput",
    "behaviour_importance_weights",
    "bradley_terry_loss",
    "compute_gae",
    "dpo_loss",
    "enhance_reward",
    "enhancement",
    "entropy_from_logits",
    "estimate_advantages",
    "estimator_needs_values",
    "get_adv_estimator",
    "get_policy_loss",
    "grpo_advantages",
    "kl_estimate",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "masked_whiten_across_ranks",
    "ppo_policy_loss",
    "register_adv_est",
    "register_policy_loss",
    "sequence_logprobs",
    "terminal_rewards",
    "value_loss",
]
