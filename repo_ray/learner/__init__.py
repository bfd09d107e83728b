"""The DeepSpeed LoRA learner group (Ray actors) and its pure trainers: repo, ppo, grpo, sft, dpo."""

from repo_ray.learner.batch import (
    TokenBatch,
    collate_dialogues,
    collate_preferences,
    collate_trajectories,
    prepare_rl_batch,
    reward_field,
    select_samples,
)
from repo_ray.learner.group import MODES, CheckpointError, LearnerGroup, PlacementError
from repo_ray.learner.models import ValueModel, build_policy, build_value_model
from repo_ray.learner.trainers import (
    RLSettings,
    StepMetrics,
    SupervisedMetrics,
    TorchEngine,
    dpo_step,
    rl_step,
    sft_step,
    summarize_rl,
    summarize_supervised,
)

__all__ = [
    "MODES",
    "CheckpointError",
    "LearnerGroup",
    "PlacementError",
    "RLSettings",
    "StepMetrics",
    "SupervisedMetrics",
    "TokenBatch",
    "TorchEngine",
    "ValueModel",
    "build_policy",
    "build_value_model",
    "collate_dialogues",
    "collate_preferences",
    "collate_trajectories",
    "dpo_step",
    "prepare_rl_batch",
    "reward_field",
    "rl_step",
    "select_samples",
    "sft_step",
    "summarize_rl",
    "summarize_supervised",
]
