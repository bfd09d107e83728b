"""Per-RL-step statistics of a batch of trajectories and their rewards: the columns of the
driver's steps table (one row per step) that the report plots. Pure: no Ray, no torch.

`batch_stats(trajectories, rewards)`:
- samples: every sample of the batch (trained and masked); masked: how many of them are
  masked (a `None` reward, never scored, counts as masked). Masked share = masked / samples.
- r_total_mean, r_model_mean, e_judge_mean, e_func_mean: means over the unmasked samples of
  the values present (a source that did not answer, or is disabled, is left out of its
  mean, never a 0); NaN when no sample has the value.
- response_len_mean: mean response length in tokens (stop token included) over ALL the
  batch's trajectories, masked ones too: it describes what the policy generates.
- distinct_1, distinct_2: corpus-level distinct-n (Li et al., 2016) over all response
  texts: distinct n-grams / all n-grams, with words (Latin letters and digits, lower-cased)
  and single CJK characters as tokens; n-grams do not cross replies. NaN with no n-gram.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

from repo_ray.types import RewardResult, Trajectory

STEP_STAT_KEYS = ("samples", "masked", "r_total_mean", "r_model_mean", "e_judge_mean", "e_func_mean",
                  "response_len_mean", "distinct_1", "distinct_2")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[\u3400-\u4dbf\u4e00-\u9fff]")


def text_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the texts (NaN when there is no n-gram)."""
    if n < 1:
        raise ValueError(f"n = {n} < 1")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        toks = text_tokens(text)
        grams = list(zip(*(toks[i:] for i in range(n))))
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else math.nan


def _mean(values: Sequence[float | None]) -> float:
    xs = [float(v) for v in values if v is not None]
    return sum(xs) / len(xs) if xs else math.nan


def batch_stats(trajectories: Sequence[Trajectory], rewards: Sequence[RewardResult | None]) -> dict[str, float | int]:
    """The step-table statistics of one batch (module docstring); `rewards[i]` belongs to
    `trajectories[i]`."""
    if len(trajectories) != len(rewards):
        raise ValueError(f"{len(trajectories)} trajectories but {len(rewards)} rewards")
    for t, r in zip(trajectories, rewards, strict=True):
        if r is not None and r.sample_id != t.sample_id:
            raise ValueError(f"reward {r.sample_id} paired with trajectory {t.sample_id}")
    kept = [r for r in rewards if r is not None and not r.masked]
    return {
        "samples": len(rewards),
        "masked": len(rewards) - len(kept),
        "r_total_mean": _mean([r.r_total for r in kept]),
        "r_model_mean": _mean([r.r_model for r in kept]),
        "e_judge_mean": _mean([r.e_judge for r in kept]),
        "e_func_mean": _mean([r.e_func for r in kept]),
        "response_len_mean": _mean([t.num_response_tokens for t in trajectories]),
        "distinct_1": distinct_n((t.response_text for t in trajectories), 1),
        "distinct_2": distinct_n((t.response_text for t in trajectories), 2),
    }
