"""Rollout: the RolloutBackend protocol, HF and vLLM backends, the context policy, multi-turn
negotiations against the hotel simulator, and the RolloutWorker actor (DESIGN.md §2).

Backends and the actor are imported from their modules (`repo_ray.rollout.hf`,
`.vllm_backend`, `.worker`): vLLM is optional and Ray stays out of the pure code.
"""

from repo_ray.rollout.backend import (
    FinishReason,
    Generation,
    RolloutBackend,
    SamplingSettings,
    stop_token_ids,
)
from repo_ray.rollout.context import ContextBudgetError, fit_context
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
    "fit_context",
    "play_negotiations",
    "stable_seed",
    "stop_token_ids",
]
