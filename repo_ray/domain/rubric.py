"""Names of the RF rules and the RJ rubric items (DESIGN.md §4), in one place.

The config validates weight keys against these, the rule registry and the judge prompt
implement them, and the defect registry names them as the expected catcher.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# RF rules: pure (response, context) -> RuleResult(score <= 0, tags).
RULES: dict[str, str] = {
    "format_breakage": "markup, role tags, unbalanced brackets or template debris in the reply",
    "mixed_language": "the reply mixes in the other language (Chinese in English or vice versa)",
    "cot_leakage": "chain-of-thought or planning text leaks into the reply",
    "internal_term_leakage": "internal terms (target price, floor price, work order, ...) are revealed",
    "forbidden_words": "over-promising or forbidden wording (guarantee, definitely, 100%, ...)",
    "repeated_phrasing": "the same stock sentence repeated across the agent's turns",
    "overlength": "the reply is longer than the configured character budget",
    "price_constraints": "an asked price outside [floor, current] for its room type",
    "hallucinated_numbers": "a number that appears nowhere in the scenario, dialogue or allowed list",
    "truncated": "the reply was cut at the token budget (rollout.max_new_tokens) before it ended",
}

# RJ rubric items: each scored in [-10, 10] by the judge, null when not applicable.
JUDGE_ITEMS: dict[str, str] = {
    "emotional_soothing": "acknowledges and soothes the hotel's concerns or emotions",
    "persuasive_style": "persuasive, human, warm style rather than robotic stock phrases",
    "sop_compliance": "does what the SOP asks at the current stage",
    "price_pursuit": "keeps pursuing a concrete price instead of giving up or drifting",
    "no_overpromising": "promises nothing the OTA cannot guarantee",
    "no_repeated_confirmation": "confirms the deal once, not again and again",
    "silence_not_consent": "does not treat the hotel's silence as agreement",
    "immediate_acceptance": "accepts at once when the hotel offers at or below the target",
    "covers_all_room_types": "addresses every room type of a multi-ticket dialogue",
}

JUDGE_SCORE_RANGE = (-10.0, 10.0)

DEFAULT_RULE_WEIGHTS: dict[str, float] = {
    "format_breakage": 20.0,
    "mixed_language": 20.0,
    "cot_leakage": 40.0,
    "internal_term_leakage": 50.0,
    "forbidden_words": 30.0,
    "repeated_phrasing": 15.0,
    "overlength": 10.0,
    "price_constraints": 40.0,
    "hallucinated_numbers": 30.0,
    # A cut reply reaches the hotel unfinished (half a sentence, maybe half a price): charged
    # like an invented number, so rambling to the budget never pays over stopping in time.
    "truncated": 30.0,
}

# Sum of |weight| x 10 = 100: a judge that scores every item at an extreme reaches +-n.
DEFAULT_JUDGE_WEIGHTS: dict[str, float] = {
    "emotional_soothing": 1.0,
    "persuasive_style": 1.0,
    "sop_compliance": 1.5,
    "price_pursuit": 1.5,
    "no_overpromising": 1.0,
    "no_repeated_confirmation": 0.75,
    "silence_not_consent": 1.0,
    "immediate_acceptance": 1.25,
    "covers_all_room_types": 1.0,
}

# Plug-ins (repo_ray/plugins.py): a rule of reward.extra_rules that reward.rule_weights does
# not name weighs like the built-in format and language rules; an extra rubric item of
# judge.extra_items carries its own weight (default 1.0, the built-in items' typical weight).
DEFAULT_EXTRA_RULE_WEIGHT = 20.0
DEFAULT_EXTRA_ITEM_WEIGHT = 1.0


def rubric_items(extra: Iterable[Any] = ()) -> dict[str, str]:
    """The training judge's rubric: the built-in items, then the extra ones (objects with
    `name` and `prompt`, e.g. judge.extra_items), each name -> the line the judge reads."""
    items = dict(JUDGE_ITEMS)
    for item in extra:
        items[item.name] = item.prompt
    return items
