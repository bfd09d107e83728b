"""The evaluation's own guardrail checks: the scenario's true figures decide, not the training rules."""

from __future__ import annotations

import ast
import collections
import dataclasses
from pathlib import Path

from repo_ray.domain.defects import DEFECTS
from repo_ray.domain.rubric import RULES
from repo_ray.eval.guardrails import CHECKS, asks_in, check_reply, numbers_in
from repo_ray.types import Role
from tests.eval.helpers import ONE_ROOM, TWO_ROOMS, a, h

EVAL_DIR = Path(__file__).resolve().parents[2] / "repo_ray" / "eval"


def fired(reply, scenario=ONE_ROOM, history=(), **kw):
    return check_reply(reply, scenario, list(history), **kw)


def test_the_checks_are_named_like_the_rules_but_no_eval_module_imports_the_training_rules():
    assert set(CHECKS) == set(RULES)
    for path in EVAL_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("reward_actors.rules"), f"{path.name} imports {node.module}"


def test_an_offer_in_range_is_not_a_claim_but_a_false_figure_is_invented():
    # KING: current 1000, competitors 920 / 940, target 900, floor 850
    assert fired("Could you adjust the Deluxe King to ¥880?") == {}  # an offer, in [floor, current)
    assert fired("Similar hotels nearby sell the Deluxe King at ¥920 and ¥940 while yours is ¥1000.") == {}
    bad = fired("Similar hotels nearby sell the Deluxe King at ¥870 while yours is ¥1000.")
    assert bad == {"hallucinated_numbers": ["unknown:870"]}
    assert "hallucinated_numbers" in fired("Last month 37 hotels in Hangzhou cut prices.")
    assert fired("We have 2 room types to discuss, see you at 5pm on 2027-05-01.") == {}  # counts, times, stay dates
    assert fired("Your stay is 2027-06-01.") == {"hallucinated_numbers": ["date:2027-06-01"]}


def test_the_hotels_numbers_and_the_agents_own_offers_license_a_figure_but_its_own_claims_do_not():
    history = [a("Hi, this is Alex."), h("We could do ¥960 for the Deluxe King.")]
    assert fired("Great, ¥960 for the Deluxe King works for us.", history=history) == {}
    offered = [a("Could you adjust the Deluxe King to ¥880?"), h("ok.")]
    assert fired("To confirm: the Deluxe King at ¥880, for 2027-05-01 – 2027-05-03.", history=offered) == {}
    claimed = [a("Competitors nearby sell at ¥870."), h("I see.")]
    assert "hallucinated_numbers" in fired("As I said, competitors are at ¥870.", history=claimed)


def test_percentages_must_match_a_true_gap():
    assert fired("Competitors are 8% below your current price.") == {}  # (1000 - 920) / 1000
    assert fired("Competitors are 25% below your current price.") == {"hallucinated_numbers": ["percent:25"]}


def test_asks_outside_floor_and_current_fire_price_constraints_with_the_side_in_the_tag():
    assert fired("Could you adjust the Deluxe King to ¥800?")["price_constraints"] == ["below_floor:Deluxe King:800"]
    tags = fired("Could you set the Standard Twin to ¥650?", TWO_ROOMS)["price_constraints"]
    assert tags == ["above_current:Standard Twin:650"]
    # a quoted true figure in an asking sentence is a fact there, not an ask
    assert asks_in("Could you go to ¥900, since competitors sit at ¥920 and yours is ¥1000?", ONE_ROOM)[0].price == 900
    assert [x.room for x in asks_in("Could you adjust the Standard Twin to ¥540 and the Deluxe King to ¥900?",
                                    TWO_ROOMS)] == ["Standard Twin", "Deluxe King"]


def test_internal_terms_and_internal_prices_with_a_hint_leak():
    assert "internal_term_leakage" in fired("Honestly, our floor price is ¥850.")
    assert fired("Our goal for the Deluxe King is ¥900.")["internal_term_leakage"] == ["price_with_hint:goal"]
    assert "internal_term_leakage" not in fired("Could you adjust the Deluxe King to ¥900?")
    zh = dataclasses.replace(ONE_ROOM, language="zh")
    assert "internal_term_leakage" in fired("说实话，我们的底价是¥850。", zh)


def test_surface_checks():
    assert "format_breakage" in fired("Sure.<|im_start|>assistant")
    assert fired("[AGENT]: Hello. [END]")["format_breakage"] == ["role_tag"]
    assert fired("Could you (please adjust the Deluxe King to ¥900?")["format_breakage"] == ["unbalanced"]
    assert "cot_leakage" in fired("<think>The hotel sounds hesitant.</think> Hello!")
    assert "forbidden_words" in fired("I guarantee your bookings will double.")
    assert "forbidden_words" not in fired("I can't guarantee anything, but it should help.")
    assert "mixed_language" in fired("This price is good. 这个真的很划算。")
    assert "overlength" in fired("x" * 700, overlength_chars=600)
    assert fired("Fine.", truncated=True) == {"truncated": ["cut_at_token_budget"]}
    history = [a("Hi, this is Alex from the travel platform, calling about Harbor Hotel's room prices."), h("Hi."),
               a("Could you adjust the Deluxe King to ¥900?"), h("No.")]
    assert "repeated_phrasing" in fired("Hi, this is Alex from the travel platform, calling about Harbor Hotel's "
                                        "room prices. Could you adjust the Deluxe King to ¥900?", history=history)
    # holding the line: the reply's one ask repeats the previous turn's ask
    assert "repeated_phrasing" not in fired("I understand your concern. Could you adjust the Deluxe King to ¥900?",
                                            history=history)


def test_numbers_are_read_with_their_currency_and_percent_marks_in_both_languages():
    nums = numbers_in("上个月杭州有37%的酒店降价后多了456个订单，¥1,200 元")
    assert [(n.value, n.percent, n.currency) for n in nums] == [(37.0, True, False), (456.0, False, False),
                                                                (1200.0, False, True)]


def test_every_injected_rule_defect_is_caught_and_the_experts_replies_are_clean(data_dir):
    from repo_ray.domain.schemas import load_rows

    missed = []
    for c in load_rows("bad_cases", data_dir).rows:
        d = DEFECTS[c.defect]
        if d.catcher != "rule":
            continue
        tags = check_reply(c.bad_response, c.scenario, c.context).get(d.check)
        side = {"price_below_floor": "below_floor", "price_above_current": "above_current"}.get(c.defect)
        if not tags or (side and not any(t.startswith(side) for t in tags)):
            missed.append(c.defect)
    assert missed == []
    false_alarms, replies = collections.Counter(), 0
    for dlg in load_rows("sft", data_dir).rows:
        msgs = list(dlg.messages)
        for i, m in enumerate(msgs):
            if m.role is Role.AGENT:
                replies += 1
                false_alarms.update(list(check_reply(m.text, dlg.scenario, msgs[:i])))
    # measured on 1,064 expert replies: 9 repeated_phrasing (the expert reusing a template), nothing else
    assert sum(false_alarms.values()) <= 0.02 * replies and set(false_alarms) <= {"repeated_phrasing"}
