"""Plug-ins the plug-in tests load by import path (tests.plugin_rules:...): a rule that
charges every reply and a rubric-item heuristic that scores every reply -5, so their mark on
a run's rewards is certain whatever the tiny policy says."""

from __future__ import annotations

from reward_actors.rules import RuleContext, RuleResult


def flags_every_reply(response: str, ctx: RuleContext) -> RuleResult:
    return RuleResult(-1.0, ("every reply",))


def minus_five(payload) -> tuple[float, str]:
    return -5.0, f"{len(str(payload.get('reply', '')))} characters"


def scores_too_high(response: str, ctx: RuleContext) -> RuleResult:
    return RuleResult(0.5, ("no bonus documented",))


def returns_a_float(response: str, ctx: RuleContext) -> float:
    return -1.0


def small_bonus(response: str, ctx: RuleContext) -> RuleResult:
    return RuleResult(0.5 if "thank" in response.lower() else 0.0)


small_bonus.bonus = 0.5  # documented: up to +0.5 for thanking the hotel
