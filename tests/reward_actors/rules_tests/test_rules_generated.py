"""The rules on generated data: each rule-caught defect is caught by its named rule on the
rejected replies of preference pairs (>= 90%), and the expert's replies are clean (the chosen
side of the pairs, and every agent turn of a few hundred expert dialogues: <= 1% flagged)."""

import collections

import pytest

from repo_ray.domain.datagen import preference_rows, sft_rows
from repo_ray.domain.defects import DEFECTS
from repo_ray.domain.scenario import Scenario
from repo_ray.types import Message, Role
from reward_actors.rules import RuleContext, run_rules

RULE_DEFECTS = sorted(d for d, spec in DEFECTS.items() if spec.catcher == "rule")


@pytest.fixture(scope="module")
def judged():
    """(row, rules on chosen, rules on rejected) for 640 pairs: 40 per defect, half Chinese."""
    out = []
    for row in preference_rows(640, seed=5, zh_fraction=0.5, max_room_types=3):
        ctx = RuleContext.from_scenario(Scenario.from_row(row["scenario"]), row["context"])
        out.append((row, run_rules(row["chosen"], ctx), run_rules(row["rejected"], ctx)))
    return out


def test_rule_history_is_the_agent_and_hotel_turns(judged):
    row = judged[-1][0]
    ctx = RuleContext.from_scenario(Scenario.from_row(row["scenario"]), row["context"])
    assert row["context"][0]["role"] == "system"
    assert [m.text for m in ctx.history] == [m["text"] for m in row["context"][1:]]


@pytest.mark.parametrize("defect", RULE_DEFECTS)
def test_rule_caught_defect_fires_its_rule_on_rejected_replies(defect, judged):
    rule = DEFECTS[defect].check
    rows = [(row, rejected) for row, _, rejected in judged if row["defect"] == defect]
    caught = sum(rejected[rule].fired for _, rejected in rows)
    assert len(rows) >= 30
    assert caught / len(rows) >= 0.9, f"{defect}: {rule} caught {caught}/{len(rows)}"


def test_expert_replies_fire_no_rule(judged):
    fired = collections.Counter(name for _, chosen, _ in judged for name, res in chosen.items() if res.fired)
    dirty = sum(any(res.fired for res in chosen.values()) for _, chosen, _ in judged)
    assert dirty / len(judged) <= 0.03, f"{dirty}/{len(judged)} expert replies fire a rule: {dict(fired)}"
    # the expert never leaks, promises, invents numbers or asks outside [floor, current]
    assert set(fired) <= {"repeated_phrasing"}


def test_rule_scores_stay_within_the_documented_range(judged):
    scores = [res.score for _, chosen, rejected in judged for r in (chosen, rejected) for res in r.values()]
    assert min(scores) == -2.0 and max(scores) == 0.0


def test_expert_dialogue_turns_are_flagged_at_most_one_percent():
    """Every agent turn of 300 seeded expert dialogues (half Chinese, up to three room types),
    judged in its own context: counter-offers, hotel figures repeated, confirmations with dates."""
    fired: collections.Counter[str] = collections.Counter()
    replies = dirty = 0
    for row in sft_rows(300, seed=2, zh_fraction=0.5, max_room_types=3):
        sc = Scenario.from_row(row["scenario"])
        messages = [Message.from_dict(m) for m in row["messages"]]
        for i, m in enumerate(messages):
            if m.role is Role.AGENT:
                names = [n for n, res in run_rules(m.text, RuleContext.from_scenario(sc, messages[:i])).items()
                         if res.fired]
                replies += 1
                dirty += bool(names)
                fired.update(names)
    assert replies >= 1500
    assert dirty / replies <= 0.01, f"{dirty}/{replies} expert replies flagged: {dict(fired)}"
    # the expert states only facts and offers inside [floor, current]: the number rules never fire
    assert not fired["hallucinated_numbers"] and not fired["price_constraints"], dict(fired)
