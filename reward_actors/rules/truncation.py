"""The `truncated` rule: a reply cut at the token budget is charged as such (DESIGN.md §7,
no silent truncation).

Why a rule, and not masking or a length-shaped penalty: masking would hide the cut replies
from the loss, so a policy that rambles to the budget would never learn to stop; a penalty
growing with length (DAPO's soft overlong punishment) would also tax complete long replies,
which the budget (rollout.max_new_tokens, sized to the expert replies) already admits. A
cut reply is simply an unfinished message, so it pays one fixed violation: its weight in
reward.rule_weights (E units). The flag is a fact about the generation that the text
cannot show, so it reaches the rule through `RuleContext.truncated` (from
`Trajectory.truncated`); the reply's other rules still read its text, which ends at the
last whole character.
"""

from __future__ import annotations

from reward_actors.rules.base import CLEAN, RuleContext, RuleResult, register_rule, violations


@register_rule("truncated")
def truncated(response: str, ctx: RuleContext) -> RuleResult:
    """-1 when the reply hit max_new_tokens without a stop token, else clean."""
    return violations(["cut_at_token_budget"]) if ctx.truncated else CLEAN
