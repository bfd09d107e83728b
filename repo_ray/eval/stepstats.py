"""Per-step statistics of a batch of trajectories and their rewards (for steps.parquet)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from repo_ray.types import RewardResult, Trajectory


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts' whitespace tokens (NaN when none)."""
    grams: list[tuple[str, ...]] = []
    for t in texts:
        toks = t.split()
        grams += [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan


def batch_stats(trajectories: Sequence[Trajectory], rewards: Sequence[RewardResult]) -> dict[str, float]:
    """Means over unmasked samples of each reward field, masked count, sample count,
    response length in tokens and distinct-1/2 of the response texts."""
    kept = [r for r in rewards if not r.masked]

    def field(name: str) -> float:
        return _mean([getattr(r, name) for r in kept if getattr(r, name) is not None])

    texts = [t.response_text for t in trajectories]
    return {
        "samples": len(trajectories),
        "masked": len(rewards) - len(kept),
        "r_total_mean": field("r_total"),
        "r_model_mean": field("r_model"),
        "e_judge_mean": field("e_judge"),
        "e_func_mean": field("e_func"),
        "response_len_mean": _mean([len(t.response_token_ids) for t in trajectories]),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
    }
