"""Pure torch math of REPO and its baselines (no Ray): reward enhancement, advantages, losses."""

from repo_ray.algos.advantages import (
    ADV_ESTIMATORS,
    compute_gae,
    get_adv_estimator,
    grpo_advantages,
    register_adv_est,
    terminal_rewards,
)
from repo_ray.algos.losses import (
    KL_ESTIMATORS,
    POLICY_LOSSES,
    BradleyTerryOutput,
    DPOOutput,
    PolicyLossOutput,
    ValueLossOutput,
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
from repo_ray.algos.masked import masked_mean, masked_sum, masked_var, masked_whiten
from repo_ray.algos.reward_enhance import RMNormalizer, enhance_reward, enhancement

__all__ = [
    "ADV_ESTIMATORS",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "BradleyTerryOutput",
    "DPOOutput",
    "PolicyLossOutput",
    "RMNormalizer",
    "ValueLossOutput",
    "bradley_terry_loss",
    "compute_gae",
    "dpo_loss",
    "enhance_reward",
    "enhancement",
    "entropy_from_logits",
    "get_adv_estimator",
    "get_policy_loss",
    "grpo_advantages",
    "kl_estimate",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "ppo_policy_loss",
    "register_adv_est",
    "register_policy_loss",
    "sequence_logprobs",
    "terminal_rewards",
]
