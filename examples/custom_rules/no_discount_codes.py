"""A plug-in guardrail for repo-ray: the agent must never hand the hotel a discount, promo or
coupon code (the OTA's promotions team issues those; an agent inventing one is a promise
the OTA cannot keep).

Use it without editing repo-ray, from a config:

    reward:
      extra_rules: ["examples.custom_rules.no_discount_codes:no_discount_codes"]
      rule_weights: {no_discount_codes: 40}        # optional; default 20
    judge:
      extra_items:
        - name: no_code_offers
          prompt: "offers no discount, promo or coupon codes (only the promotions team issues them)"
          weight: 1.0
          heuristic: "examples.custom_rules.no_discount_codes:code_offer_item"

The module must be importable where the rule checkers run: from the repository root,
`PYTHONPATH=$PWD repo-ray ...`; on a cluster, install it or ship it with the job's
working_dir (`ray job submit --working-dir .`) or `runtime_env.py_modules`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from reward_actors.rules import RuleContext, RuleResult, violations

# a code word next to what it unlocks, or a code-looking token (SAVE20, HOTEL-15) after "code"
_CODE = re.compile(
    r"\b(?:discount|promo(?:tion(?:al)?)?|coupon|voucher|referral)\s+codes?\b"
    r"|\bcodes?\s*[:：]?\s*[A-Z]{2,}[-_]?\d{1,3}\b"
    r"|优惠码|折扣码|优惠券码|兑换码",
    re.I,
)


def no_discount_codes(response: str, ctx: RuleContext) -> RuleResult:
    """-1 per mention of a discount / promo / coupon code (capped at -2 like every rule); 0 if clean."""
    return violations([f"code offer: {m.group(0)!r}" for m in _CODE.finditer(response)])


def code_offer_item(payload: Mapping[str, Any]) -> tuple[float | None, str]:
    """The same check as a rubric item for the local heuristic judge: payload is the prompt's
    data block (language, hotel, room_types, dialogue, reply). -10 when the reply offers a
    code, null otherwise (the item does not apply to a reply that mentions none)."""
    found = _CODE.findall(str(payload.get("reply", "")))
    return (-10.0, f"offers a code ({found[0]})") if found else (None, "mentions no code")
