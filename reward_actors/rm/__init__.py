"""The reward model (RM): Bradley-Terry training on preference pairs and batched scoring.

- `reward_actors.rm.data`: RM inputs (context + reply as ChatML ids), the scenario split.
- `reward_actors.rm.train`: `train_reward_model` -> `RMTrainResult` (`repo-ray train-rm`).
- `reward_actors.rm.scorer`: `score_batch`, `RewardModelScorer`, the `RMScorer` Ray actor.
- `reward_actors.rm.stats`: `rm_stats.json` (z-score statistics and accuracy report).

Only the Ray-free input and stats helpers are imported here; train and scorer load torch
models (and Ray) when imported.
"""

from reward_actors.rm.data import (
    LENGTH_MATCH_TOLERANCE,
    EncodedPair,
    PairSplit,
    encode_pair,
    encode_pairs,
    length_matched,
    rm_fit,
    rm_input_ids,
    split_by_scenario,
    trajectory_input_ids,
)
from reward_actors.rm.stats import STATS_FILE, AccuracyReport, GroupAccuracy, RMStats, load_rm_stats

__all__ = [
    "LENGTH_MATCH_TOLERANCE",
    "STATS_FILE",
    "AccuracyReport",
    "EncodedPair",
    "GroupAccuracy",
    "PairSplit",
    "RMStats",
    "encode_pair",
    "encode_pairs",
    "length_matched",
    "load_rm_stats",
    "rm_fit",
    "rm_input_ids",
    "split_by_scenario",
    "trajectory_input_ids",
]
