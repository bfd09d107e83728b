"""E_func: the weighted sum of the RF rules' raw scores for one reply (DESIGN.md §1).

Not clipped here: only E_judge + E_func is clipped, in `repo_ray.algos.enhance_reward`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from reward_actors.rules.base import RULE_FUNCS, RuleContext, RuleResult, rule_funcs


@dataclass(frozen=True, slots=True)
class EFunc:
    """E_func of one reply, with each evaluated rule's raw score (<= 0) and why rules fired.

    scores: raw score per weighted rule (E_func = sum(weights[r] * scores[r])).
    violations: the rules that fired, in registry order.
    tags: rule -> its tags, for the rules that fired.
    """

    e_func: float
    scores: dict[str, float] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)


def run_rules(response: str, ctx: RuleContext, names: Iterable[str] | None = None) -> dict[str, RuleResult]:
    """Every named rule's result (all built-in rules when `names` is None: the evaluation's
    guardrail table; plug-in rules by name), e.g. for evaluation reports."""
    if names is None:
        selected = RULE_FUNCS
    else:
        every = rule_funcs()
        selected = {n: every[n] for n in names}
    return {name: fn(response, ctx) for name, fn in selected.items()}


def e_func(response: str, ctx: RuleContext, weights: Mapping[str, float]) -> EFunc:
    """E_func = sum over rules with a non-zero weight of weight * raw score (unweighted rules
    are not run). Weights are in E units (n = 100): one violation costs the rule's weight."""
    every = rule_funcs()  # built-in, then the plug-in rules loaded with the config (reward.extra_rules)
    unknown = set(weights) - set(every)
    if unknown:
        raise KeyError(f"unknown rule(s) {sorted(unknown)}; known: {sorted(every)}")
    total = 0.0
    scores: dict[str, float] = {}
    fired: list[str] = []
    tags: dict[str, tuple[str, ...]] = {}
    for name, fn in every.items():
        w = weights.get(name, 0.0)
        if not w:
            continue
        res = fn(response, ctx)
        scores[name] = res.score
        total += w * res.score
        if res.score < 0:
            fired.append(name)
            tags[name] = res.tags
    return EFunc(total, scores, fired, tags)
