"""Rollout: the RolloutBackend protocol, HF and vLLM backends, multi-turn negotiations
against the hotel simulator, and the RolloutWorker actor (DESIGN.md §2). The context policy
(`fit_prompt`) lives in `repo_ray.model.context`, shared with SFT, DPO and the RM.

Backends and the actor are imported from their modules (`repo_ray.rollout.hf`,
`.vllm_backend`, `.worker`): vLLM is optional and Ray stays out of the pure code.
"""

from repo_ray.model.context import ContextBudgetError, fit_prompt
from repo_ray.rollout.backend import (
    FinishReason,
    Generation,
    RolloutBackend,
    SamplingSettings,
    stop_token_ids,
)
from repo_ray.rollout.play import EndReason, EpisodeSummary, RolloutResult, play_negotiations, stable_seed
from repo_ray.rollout.worker import build_backend

__all__ = [
    "ContextBudgetError",
    "EndReason",
    "EpisodeSummary",
    "FinishReason",
    "Generation",
    "RolloutBackend",
    "RolloutResult",
    "SamplingSettings",
    "build_backend",
    "fit_prompt",
    "play_negotiations",
    "stable_seed",
    "stop_token_ids",
]
