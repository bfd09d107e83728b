"""The `truncated` rule: a reply cut at the token budget pays one fixed violation, whatever
its text; the flag reaches the rule from `Trajectory.truncated` (pool) and from a
check-rules line. Not in the text tables of test_rules_tables.py: its verdict is not a
function of the text."""

import dataclasses

import pytest

from repo_ray.domain.rubric import DEFAULT_RULE_WEIGHTS, RULES
from repo_ray.types import Message, Role, Trajectory
from reward_actors.rules import RULE_FUNCS, RuleContext, e_func

from .conftest import context, scenario

REPLIES = {
    "en": ["Could you adjust the Deluxe King to ¥900? It would really help your", "Thanks!", ""],
    "zh": ["能否把豪华大床房调整到¥9", "好的，谢谢您！"],
}


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_fires_exactly_when_the_reply_was_cut(lang):
    cut, whole = context(lang, truncated=True), context(lang)
    for reply in REPLIES[lang]:
        assert RULE_FUNCS["truncated"](reply, cut).score == -1.0
        assert RULE_FUNCS["truncated"](reply, cut).tags == ("cut_at_token_budget",)
        assert not RULE_FUNCS["truncated"](reply, whole).fired


def test_a_cut_reply_costs_exactly_the_rules_weight_on_top_of_its_other_violations():
    assert "truncated" in RULES and list(RULE_FUNCS)[-1] == "truncated"
    reply = "Could you adjust the Deluxe King to ¥900? It would really help your"
    whole = e_func(reply, context("en"), DEFAULT_RULE_WEIGHTS)
    cut = e_func(reply, context("en", truncated=True), DEFAULT_RULE_WEIGHTS)
    assert DEFAULT_RULE_WEIGHTS["truncated"] == 30.0
    assert cut.e_func == pytest.approx(whole.e_func - 30.0)
    assert cut.violations == [*whole.violations, "truncated"] and cut.scores["truncated"] == -1.0
    assert e_func(reply, context("en", truncated=True), {"truncated": 5.0}).e_func == -5.0


def test_the_pool_passes_the_trajectorys_truncated_flag_to_the_rules():
    from repo_ray.config import RewardConfig
    from reward_actors.pool import rule_source_result

    sc = scenario("en")
    traj = Trajectory(
        sample_id="s1", scenario_id=sc.scenario_id, turn_index=1,
        messages=[Message(Role.SYSTEM, "facts"), Message(Role.AGENT, "Hi"), Message(Role.HOTEL, "Hello, go ahead.")],
        response_text="Could you adjust the Deluxe King to ¥900? It would",
        prompt_token_ids=[1, 2, 3], response_token_ids=[4, 5, 6], response_logprobs=[-1.0, -1.0, -1.0],
        response_mask=[1, 1, 1], sop_stage="price_pursuit", adapter_version=0,
    )
    cfg = RewardConfig()
    whole = rule_source_result(traj, sc, cfg)
    cut = rule_source_result(dataclasses.replace(traj, truncated=True), sc, cfg)
    assert "truncated" not in whole.detail.split(",") and "truncated" in cut.detail.split(",")
    assert cut.score == pytest.approx(whole.score - cfg.rule_weights["truncated"])


def test_a_check_rules_line_may_say_the_reply_was_truncated():
    room = {"name": "Deluxe King", "current_price": 1000, "competitor_prices": [880, 920], "target_price": 900,
            "floor_price": 850}
    rec = {"response": "Could you adjust the Deluxe King to ¥900?", "history": [], "language": "en",
           "room_types": [room]}

    def violations(record):
        return e_func(record["response"], RuleContext.from_record(record), DEFAULT_RULE_WEIGHTS).violations

    assert violations(rec) == [] and violations({**rec, "truncated": False}) == []
    assert violations({**rec, "truncated": True}) == ["truncated"]
    with pytest.raises(ValueError, match="truncated: expected true or false"):
        RuleContext.from_record({**rec, "truncated": "yes"})


def test_trajectory_truncated_is_a_bool_and_defaults_to_false():
    kw = dict(sample_id="s", scenario_id="c", turn_index=0, messages=[], response_text="x", prompt_token_ids=[1],
              response_token_ids=[2], response_logprobs=[-0.1], response_mask=[1], sop_stage="opening",
              adapter_version=0)
    assert Trajectory(**kw).truncated is False
    with pytest.raises(ValueError, match="truncated must be a bool"):
        Trajectory(**kw, truncated=1)


def test_the_evaluation_counts_a_truncated_reply_as_a_major_problem():
    from repo_ray.domain.defects import Severity
    from repo_ray.eval.metrics import problem_severity, rule_problem_names

    assert rule_problem_names("truncated", ["cut_at_token_budget"]) == ["truncated_reply"]
    assert problem_severity("truncated_reply") is Severity.MAJOR
