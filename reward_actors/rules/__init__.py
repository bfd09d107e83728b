"""RF rules (DESIGN.md §4): pure `(response, RuleContext) -> RuleResult` functions registered
by the names of `repo_ray.domain.rubric.RULES`, and E_func, their weighted sum."""

from repo_ray.domain.rubric import RULES
from reward_actors.rules import guardrails, numbers, surface  # noqa: F401  (fill the registry)
from reward_actors.rules import truncation  # noqa: F401  (the rule on Trajectory.truncated)
from reward_actors.rules.base import MAX_VIOLATIONS, RULE_FUNCS, RuleContext, RuleResult, register_rule
from reward_actors.rules.efunc import EFunc, e_func, run_rules

if set(RULE_FUNCS) != set(RULES):
    raise RuntimeError(
        f"rule registry out of step with repo_ray.domain.rubric.RULES: no function for "
        f"{sorted(set(RULES) - set(RULE_FUNCS))}, not in RULES: {sorted(set(RULE_FUNCS) - set(RULES))}"
    )
# Registry order = RULES order, so violations lists and reports read the same everywhere.
_ordered = {name: RULE_FUNCS[name] for name in RULES}
RULE_FUNCS.clear()
RULE_FUNCS.update(_ordered)

__all__ = ["MAX_VIOLATIONS", "RULE_FUNCS", "EFunc", "RuleContext", "RuleResult", "e_func", "register_rule", "run_rules"]
