"""The rules on generated preference pairs: each rule-caught defect is caught by its named rule
on the rejected replies, and the expert (chosen) replies are clean."""

import collections

import pytest

from repo_ray.domain.datagen import preference_rows
from repo_ray.domain.defects import DEFECTS
from repo_ray.domain.scenario import Scenario
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
