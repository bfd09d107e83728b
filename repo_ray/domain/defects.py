"""The defect registry: every way an agent reply can go wrong, its severity and its catcher.

One registry serves data generation (rejected responses and bad cases carry a defect),
the rules and the judge (each defect names the rule or rubric item expected to catch it)
and evaluation (bad-case outcomes weigh problems by severity).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from repo_ray.domain.rubric import JUDGE_ITEMS, RULES


class Severity(StrEnum):
    MINOR = "minor"
    MAJOR = "major"
    SEVERE = "severe"


SEVERITY_RANK = {Severity.MINOR: 1, Severity.MAJOR: 2, Severity.SEVERE: 3}


@dataclass(frozen=True, slots=True)
class Defect:
    name: str
    severity: Severity
    catcher: Literal["rule", "judge"]
    check: str  # the rule name (catcher rule) or rubric item (catcher judge)
    description: str


def _registry(*defects: Defect) -> dict[str, Defect]:
    out: dict[str, Defect] = {}
    for d in defects:
        known = RULES if d.catcher == "rule" else JUDGE_ITEMS
        if d.check not in known:
            raise ValueError(f"defect {d.name}: {d.catcher} {d.check!r} does not exist")
        if d.name in out:
            raise ValueError(f"defect {d.name} registered twice")
        out[d.name] = d
    return out


S, MA, MI = Severity.SEVERE, Severity.MAJOR, Severity.MINOR

DEFECTS: dict[str, Defect] = _registry(
    Defect("leaked_internal_term", S, "rule", "internal_term_leakage", "states the target/floor price or work order"),
    Defect("price_below_floor", S, "rule", "price_constraints", "asks for a price below the net-price floor"),
    Defect("price_above_current", MA, "rule", "price_constraints", "asks for a price above the current price"),
    Defect("hallucinated_number", MA, "rule", "hallucinated_numbers", "states a number found nowhere in the facts"),
    Defect("over_promise", MA, "rule", "forbidden_words", "guarantees outcomes the OTA cannot guarantee"),
    Defect("cot_leakage", MA, "rule", "cot_leakage", "leaks its reasoning or plan into the reply"),
    Defect("mixed_language", MI, "rule", "mixed_language", "mixes the other language into the reply"),
    Defect("format_breakage", MI, "rule", "format_breakage", "role tags, markup or template debris"),
    Defect("repeated_stock_phrasing", MI, "rule", "repeated_phrasing", "repeats a stock sentence it already used"),
    Defect("overlong", MI, "rule", "overlength", "far longer than a chat message should be"),
    Defect("repeated_confirmation", MI, "judge", "no_repeated_confirmation", "confirms a settled deal again"),
    Defect("wrong_sop_stage", MA, "judge", "sop_compliance", "does what another SOP stage calls for"),
    Defect("silence_as_consent", S, "judge", "silence_not_consent", "treats the hotel's silence as agreement"),
    Defect(
        "missed_immediate_acceptance", MA, "judge", "immediate_acceptance",
        "keeps haggling after the hotel offered at or below target",
    ),
    Defect("room_type_ignored", MA, "judge", "covers_all_room_types", "ignores a room type of a multi-ticket dialogue"),
    Defect("cold_robotic_tone", MI, "judge", "persuasive_style", "cold, robotic, form-like wording"),
    # A polite goodbye breaks no rule and states no number: without this defect nothing in the
    # preference data tells the RM that ending the call with rooms still open loses the deal.
    Defect("gives_up_early", MA, "judge", "price_pursuit", "says goodbye while room types are still open"),
)


def get_defect(name: str) -> Defect:
    try:
        return DEFECTS[name]
    except KeyError:
        raise KeyError(f"unknown defect {name!r}; known: {sorted(DEFECTS)}") from None
