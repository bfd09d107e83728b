"""RF rules (DESIGN.md §4): pure `(response, RuleContext) -> RuleResult` functions registered
by the names of `repo_ray.domain.rubric.RULES`, and E_func, their weighted sum. Plug-in rules
(reward.extra_rules) join them by import path: `rule_funcs()` lists both; a plug-in builds
its result with `RuleResult` or `violations(tags)`."""

from repo_ray.domain.rubric import RULES
from reward_actors.rules import (  # noqa: F401  (they fill the registry)
    guardrails,
    numbers,
    surface,
    truncation,  # the rule on Trajectory.truncated
)
from reward_actors.rules.base import (
    MAX_VIOLATIONS,
    RULE_FUNCS,
    RuleContext,
    RuleResult,
    register_rule,
    rule_funcs,
    violations,
)
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

__all__ = ["MAX_VIOLATIONS", "RULE_FUNCS", "EFunc", "RuleContext", "RuleResult", "e_func", "register_rule",
           "rule_funcs", "run_rules", "violations"]
