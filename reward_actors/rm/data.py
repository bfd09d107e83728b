"""Reward-model inputs: a dialogue context plus an agent reply as ChatML token ids.

Training (`encode_pair`) and scoring (`trajectory_input_ids`) both go through
`rm_input_ids`, so the RM scores exactly the sequences it was trained on. Pairs are split
into train / held-out by scenario, so no held-out context was seen in training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from repo_ray.domain.schemas import PreferencePair
from repo_ray.model.chat import encode_prompt, encode_response
from repo_ray.types import Message, Role, Trajectory

# A pair is length-matched when its two replies differ by at most this share of the longer
# one (in reply tokens): length alone cannot tell them apart, so accuracy there measures
# content.
LENGTH_MATCH_TOLERANCE = 0.15


def truncate_left(prompt_ids: Sequence[int], reply_ids: Sequence[int], system_len: int, max_tokens: int) -> list[int]:
    """`prompt_ids + reply_ids` cut to at most `max_tokens`, dropping from the left.

    What goes first: the oldest dialogue tokens after the system prompt (its first
    `system_len` prompt ids, which carry the scenario facts), then the system prompt, then
    the start of the reply. The reply's end (where the RM reads its score) always stays.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    prompt, reply = list(prompt_ids), list(reply_ids)
    if len(prompt) + len(reply) <= max_tokens:
        return prompt + reply
    if len(reply) >= max_tokens:
        return reply[-max_tokens:]
    room = max_tokens - len(reply)  # prompt tokens we may keep
    if 0 < system_len <= room:
        dialogue = prompt[system_len:]
        keep = room - system_len
        return prompt[:system_len] + (dialogue[-keep:] if keep else []) + reply
    return prompt[-room:] + reply


def _system_len(tokenizer, context: Sequence[Message], prompt_ids: list[int]) -> int:
    """Prompt ids that belong to the leading system message (0 when there is none).

    ChatML ends each message with a special token, so the system message's own ids are a
    prefix of the whole prompt's; if a template breaks that, we fall back to plain
    left truncation rather than cut inside a token sequence we do not understand.
    """
    if not context or context[0].role is not Role.SYSTEM:
        return 0
    alone = tokenizer.apply_chat_template(
        [{"role": "system", "content": context[0].text}], add_generation_prompt=False, tokenize=True, return_dict=False
    )
    n = len(alone)
    return n if n < len(prompt_ids) and [int(t) for t in alone] == prompt_ids[:n] else 0


def rm_input_ids(tokenizer, context: Sequence[Message], reply: str, max_tokens: int) -> list[int]:
    """Token ids the RM scores: the context (system prompt + dialogue) with the reply as
    the final assistant turn, ending in `<|im_end|>`, left-truncated to `max_tokens`."""
    prompt = encode_prompt(tokenizer, context)
    return truncate_left(prompt, encode_response(tokenizer, reply), _system_len(tokenizer, context, prompt), max_tokens)


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


def encode_pair(tokenizer, pair: PreferencePair, max_tokens: int) -> EncodedPair:
    prompt = encode_prompt(tokenizer, pair.context)
    system_len = _system_len(tokenizer, pair.context, prompt)
    chosen = encode_response(tokenizer, pair.chosen)
    rejected = encode_response(tokenizer, pair.rejected)
    return EncodedPair(
        pair_id=pair.pair_id,
        scenario_id=pair.scenario.scenario_id,
        defect=pair.defect,
        chosen_ids=truncate_left(prompt, chosen, system_len, max_tokens),
        rejected_ids=truncate_left(prompt, rejected, system_len, max_tokens),
        length_matched=length_matched(len(chosen), len(rejected)),
    )


def encode_pairs(tokenizer, pairs: Sequence[PreferencePair], max_tokens: int) -> list[EncodedPair]:
    return [encode_pair(tokenizer, p, max_tokens) for p in pairs]


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
