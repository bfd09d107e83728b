"""Reward-model inputs: a dialogue context plus an agent reply as ChatML token ids.

Training (`encode_pair`) and scoring (`trajectory_input_ids`) both fit the context with
`rm_fit` (the one context policy), so the RM scores the sequences it was trained on and
always sees the scenario facts. Pairs are split into train / held-out by scenario, so no
held-out context was seen in training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from repo_ray.domain.schemas import PreferencePair
from repo_ray.model.chat import encode_response
from repo_ray.model.context import ContextTally, FittedContext, fit_context
from repo_ray.types import Message, Trajectory

# A pair is length-matched when its two replies differ by at most this share of the longer
# one (in reply tokens): length alone cannot tell them apart, so accuracy there measures
# content.
LENGTH_MATCH_TOLERANCE = 0.15


def rm_fit(tokenizer, context: Sequence[Message], replies: Sequence[str], max_tokens: int) -> FittedContext:
    """The RM's view of `replies` in `context` under `max_tokens`, by the one context policy
    (`repo_ray.model.context`): the system prompt (scenario facts) always whole, the oldest
    turns out first, the replies whole unless even the smallest context leaves no room."""
    return fit_context(context, tokenizer, max_tokens, [encode_response(tokenizer, r) for r in replies],
                       what="reward.model.max_tokens")


def rm_input_ids(tokenizer, context: Sequence[Message], reply: str, max_tokens: int) -> list[int]:
    """Token ids the RM scores: the fitted context with the reply as the final assistant
    turn, ending in `<|im_end|>` (unless the reply's tail had to be cut)."""
    return rm_fit(tokenizer, context, [reply], max_tokens).input_ids(0)


def trajectory_input_ids(tokenizer, trajectory: Trajectory, max_tokens: int) -> list[int]:
    """The RM input of one rollout turn, built from its text like a training pair's side.

    Re-encoding the text (rather than reusing the policy's token ids) keeps the RM
    independent of the policy's tokenizer and of how generation stopped.
    """
    return rm_input_ids(tokenizer, trajectory.messages, trajectory.response_text, max_tokens)


def length_matched(chosen_len: int, rejected_len: int, tolerance: float = LENGTH_MATCH_TOLERANCE) -> bool:
    """|chosen - rejected| <= tolerance * the longer of the two."""
    return abs(chosen_len - rejected_len) <= tolerance * max(chosen_len, rejected_len)


@dataclass(frozen=True, slots=True)
class EncodedPair:
    """One preference pair as RM inputs, with what the accuracy report groups by."""

    pair_id: str
    scenario_id: str
    defect: str
    chosen_ids: list[int]
    rejected_ids: list[int]
    length_matched: bool  # judged on the replies alone (reply tokens), not the shared context
    pair_kind: str = "template"  # template | fact_minimal (schemas.PAIR_KINDS)
    dropped_turns: int = 0  # context messages the budget left out (the more of the two sides)
    response_cut: int = 0  # reply tokens cut because even the smallest context left no room


def encode_pair(tokenizer, pair: PreferencePair, max_tokens: int) -> EncodedPair:
    """Each side fitted on its own, exactly as `trajectory_input_ids` fits a scored reply
    (train-time inputs == score-time inputs)."""
    chosen, rejected = (rm_fit(tokenizer, pair.context, [r], max_tokens) for r in (pair.chosen, pair.rejected))
    return EncodedPair(
        pair_id=pair.pair_id,
        scenario_id=pair.scenario.scenario_id,
        defect=pair.defect,
        chosen_ids=chosen.input_ids(0),
        rejected_ids=rejected.input_ids(0),
        length_matched=length_matched(len(encode_response(tokenizer, pair.chosen)),
                                      len(encode_response(tokenizer, pair.rejected))),
        pair_kind=pair.pair_kind,
        dropped_turns=max(chosen.dropped_turns, rejected.dropped_turns),
        response_cut=chosen.response_cut + rejected.response_cut,
    )


def encode_pairs(tokenizer, pairs: Sequence[PreferencePair], max_tokens: int,
                 tally: ContextTally | None = None) -> list[EncodedPair]:
    """Every pair encoded; `tally` (when given) counts what the budget left out."""
    out = [encode_pair(tokenizer, p, max_tokens) for p in pairs]
    if tally is not None:
        for e in out:
            tally.rows += 1
            tally.rows_with_drops += e.dropped_turns > 0
            tally.dropped_turns += e.dropped_turns
            tally.rows_cut += e.response_cut > 0
            tally.tokens_cut += e.response_cut
    return out


class PairSplit(NamedTuple):
    train: list[PreferencePair]
    held_out: list[PreferencePair]


def _scenario_rank(scenario_id: str, seed: int) -> str:
    # A seeded hash, not random.shuffle: a scenario's rank depends on its id and the seed
    # only, so reordering or deduplicating rows never moves a scenario across the split.
    return hashlib.sha256(f"{seed}:{scenario_id}".encode()).hexdigest()


def split_by_scenario(pairs: Sequence[PreferencePair], holdout_fraction: float, seed: int) -> PairSplit:
    """Train / held-out pairs with no scenario on both sides; deterministic in (ids, seed).

    Scenarios are ranked by a seeded hash and the first `round(holdout_fraction * S)` of
    the S scenarios are held out (with a fraction > 0 and two or more scenarios, at least
    one and never all). Pair order within each side is the input order.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    scenarios = sorted({p.scenario.scenario_id for p in pairs}, key=lambda s: _scenario_rank(s, seed))
    n_out = max(0, min(round(holdout_fraction * len(scenarios)), len(scenarios) - 1))  # training keeps one
    if holdout_fraction > 0 and len(scenarios) >= 2:
        n_out = max(n_out, 1)
    held = set(scenarios[:n_out])
    return PairSplit(
        train=[p for p in pairs if p.scenario.scenario_id not in held],
        held_out=[p for p in pairs if p.scenario.scenario_id in held],
    )
