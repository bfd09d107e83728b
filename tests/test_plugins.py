"""Plug-in rewards by import path (CPU only, no Ray): reward.extra_rules join the RF rules with
their weights, judge.extra_items join the training judge's rubric (prompt, schema, weights,
local heuristic judge), and a bad spec fails at config load in one line naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repo_ray.config import ConfigError, JudgeConfig, RewardConfig, config_from_dict, load_config
from repo_ray.domain.rubric import DEFAULT_EXTRA_RULE_WEIGHT, JUDGE_ITEMS, rubric_items
from reward_actors.rules import RuleContext, e_func

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = "examples.custom_rules.no_discount_codes"
CODE_REPLY = "To close today, use the promo code SAVE20 on your extranet."
CLEAN_REPLY = "Could the Deluxe King come to a price nearer the market this week?"


def test_an_extra_rule_is_registered_beside_the_built_ins_with_the_default_weight():
    cfg = RewardConfig(extra_rules=[f"{EXAMPLE}:no_discount_codes"])
    assert cfg.rule_weights["no_discount_codes"] == DEFAULT_EXTRA_RULE_WEIGHT
    ctx = RuleContext()
    with_code, clean = e_func(CODE_REPLY, ctx, cfg.rule_weights), e_func(CLEAN_REPLY, ctx, cfg.rule_weights)
    assert with_code.violations == ["no_discount_codes"] and with_code.scores["no_discount_codes"] == -1.0
    assert with_code.e_func == -DEFAULT_EXTRA_RULE_WEIGHT
    assert "promo code" in with_code.tags["no_discount_codes"][0]
    assert clean.violations == [] and clean.scores["no_discount_codes"] == 0.0
    # without the plug-in in the config, the built-in rules see nothing wrong
    assert e_func(CODE_REPLY, ctx, RewardConfig().rule_weights).e_func == 0.0


def test_rule_weights_may_name_an_extra_rule_and_round_trip_through_a_dump():
    cfg = RewardConfig(extra_rules=[f"{EXAMPLE}:no_discount_codes"], rule_weights={"no_discount_codes": 45.0})
    again = RewardConfig.model_validate(cfg.model_dump(mode="json"))  # what a RuleChecker actor does
    assert again.rule_weights == {"no_discount_codes": 45.0}
    assert e_func(CODE_REPLY, RuleContext(), again.rule_weights).e_func == -45.0


def test_a_file_path_spec_loads_and_is_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "guard.py").write_text(
        "from reward_actors.rules import RuleResult, violations\n"
        "def no_emoji(response, ctx):\n    return violations(['emoji'] if '🙂' in response else [])\n")
    monkeypatch.chdir(tmp_path)
    cfg = RewardConfig(extra_rules=["guard.py:no_emoji"])
    assert cfg.extra_rules == [f"{tmp_path / 'guard.py'}:no_emoji"]
    assert e_func("Deal 🙂", RuleContext(), cfg.rule_weights).violations == ["no_emoji"]


@pytest.mark.parametrize("spec, reason", [
    ("no_such_pkg.guards:fn", "cannot import 'no_such_pkg.guards' (no module named 'no_such_pkg'; install it, put it "
                              "on PYTHONPATH"),
    (f"{EXAMPLE}:missing", f"module '{EXAMPLE}' has no attribute 'missing'"),
    (f"{EXAMPLE}:code_offer_item", "code_offer_item(payload) cannot be called as code_offer_item(response, ctx), "
                                   "the signature of an RF rule"),
    ("guards", "expected 'package.module:function'"),
    (f"{EXAMPLE}:_CODE", "'_CODE' is a Pattern, not a function"),
])
def test_a_bad_extra_rule_fails_at_config_load_in_one_line_naming_the_field(tmp_path, spec, reason):
    p = tmp_path / "c.yaml"
    p.write_text(json.dumps({"reward": {"extra_rules": [spec]}}))
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{p}: reward.extra_rules: ")
    assert reason in msg


def test_an_extra_rule_may_not_shadow_a_built_in_or_repeat_and_weights_name_only_loaded_rules():
    with pytest.raises(ConfigError, match="reward.extra_rules: .*'truncated' is a built-in rule's"):
        config_from_dict({"reward": {"extra_rules": ["reward_actors.rules.truncation:truncated"]}})
    with pytest.raises(ConfigError, match="already taken"):
        config_from_dict({"reward": {"extra_rules": [f"{EXAMPLE}:no_discount_codes"] * 2}})
    with pytest.raises(ConfigError, match=r"reward.rule_weights: unknown rule\(s\) \['not_loaded'\]"):
        config_from_dict({"reward": {"extra_rules": [f"{EXAMPLE}:no_discount_codes"],
                                     "rule_weights": {"not_loaded": 1.0}}})


def test_a_plug_in_breaking_the_contract_raises_naming_it_and_a_documented_bonus_is_allowed():
    ctx = RuleContext()
    high = RewardConfig(extra_rules=["tests.plugin_rules:scores_too_high"])
    with pytest.raises(ValueError, match=r"plug-in rule 'scores_too_high' scored 0.5, outside \[-2, 0\]"):
        e_func("hi", ctx, high.rule_weights)
    flt = RewardConfig(extra_rules=["tests.plugin_rules:returns_a_float"])
    with pytest.raises(TypeError, match="'returns_a_float' returned a float, not a RuleResult"):
        e_func("hi", ctx, flt.rule_weights)
    bonus = RewardConfig(extra_rules=["tests.plugin_rules:small_bonus"], rule_weights={"small_bonus": 10.0})
    assert e_func("Thank you!", ctx, bonus.rule_weights).e_func == 5.0


# ---------------------------------------------------------------------------- rubric items
ITEM = {"name": "no_code_offers", "prompt": "offers no discount, promo or coupon codes", "weight": 2.0,
        "heuristic": f"{EXAMPLE}:code_offer_item"}


def test_an_extra_rubric_item_joins_the_prompt_the_schema_and_the_weights():
    from reward_actors.judge.client import JudgeClient
    from reward_actors.judge.prompt import answer_schema, system_message

    cfg = JudgeConfig(extra_items=[ITEM])
    items = rubric_items(cfg.extra_items)
    assert list(items)[: len(JUDGE_ITEMS)] == list(JUDGE_ITEMS) and items["no_code_offers"] == ITEM["prompt"]
    assert "- no_code_offers: offers no discount, promo or coupon codes" in system_message("v1", items)
    assert answer_schema(items)["properties"]["scores"]["required"][-1] == "no_code_offers"
    client = JudgeClient(cfg, {k: 1.0 for k in JUDGE_ITEMS})
    assert client.weights["no_code_offers"] == 2.0 and client.items == items


def test_the_answer_must_score_the_extra_item_and_its_weight_counts():
    from reward_actors.judge.schema import InvalidJudgeOutput, parse_judge_answer

    items = rubric_items(JudgeConfig(extra_items=[ITEM]).extra_items)
    scores = {k: {"score": None, "reason": ""} for k in JUDGE_ITEMS}
    with pytest.raises(InvalidJudgeOutput, match="lacks rubric item"):
        parse_judge_answer(json.dumps({"scores": scores}), {}, items)
    scores["no_code_offers"] = {"score": -10, "reason": "offers a code"}
    verdict = parse_judge_answer(json.dumps({"scores": scores}), {"no_code_offers": 2.0}, items)
    assert verdict.scores["no_code_offers"] == -10.0 and verdict.e_judge == -20.0


def _judge_messages(reply: str, items):
    import random

    from repo_ray.domain.datagen import generate_scenario
    from repo_ray.domain.scenario import Persona
    from reward_actors.judge.prompt import JudgeContext, build_judge_messages

    sc = generate_scenario(random.Random("plug-in"), "p-1", 0.0, 1, Persona.COOPERATIVE)
    return build_judge_messages(JudgeContext(sc, (), reply), "v1", items)


def test_the_local_judge_answers_extra_items_with_their_heuristic_else_null():
    from repo_ray.plugins import resolve_heuristic
    from reward_actors.judge.heuristics import judge_answer

    items = rubric_items(JudgeConfig(extra_items=[ITEM, {"name": "no_heuristic", "prompt": "p"}]).extra_items)
    scorer = {"no_code_offers": resolve_heuristic(ITEM["heuristic"])}
    offer = judge_answer(_judge_messages(CODE_REPLY, items), extra_scorers=scorer)["scores"]
    clean = judge_answer(_judge_messages(CLEAN_REPLY, items), extra_scorers=scorer)["scores"]
    assert list(offer) == list(items)
    assert offer["no_code_offers"]["score"] == -10.0 and clean["no_code_offers"]["score"] is None
    assert offer["no_heuristic"] == {"score": None, "reason": "no local heuristic"}
    # the built-in rubric alone: the answer has exactly the built-in items
    assert list(judge_answer(_judge_messages(CLEAN_REPLY, JUDGE_ITEMS))["scores"]) == list(JUDGE_ITEMS)


def test_a_bad_rubric_item_fails_at_config_load_in_one_line():
    with pytest.raises(ConfigError, match=r"judge.extra_items.0.heuristic: .*cannot be called as no_discount_codes"
                                          r"\(payload\)"):
        config_from_dict({"judge": {"extra_items": [dict(ITEM, heuristic=f"{EXAMPLE}:no_discount_codes")]}})
    with pytest.raises(ConfigError, match="judge.extra_items.0.name: 'sop_compliance' is a built-in rubric item"):
        config_from_dict({"judge": {"extra_items": [dict(ITEM, name="sop_compliance")]}})
    with pytest.raises(ConfigError, match=r"judge.extra_items: rubric item\(s\) \['no_code_offers'\] listed twice"):
        config_from_dict({"judge": {"extra_items": [ITEM, ITEM]}})


def test_the_example_config_loads():
    cfg = load_config(ROOT / "examples" / "custom_rules" / "config.yaml")
    assert "no_discount_codes" in cfg.reward.rule_weights and cfg.judge.extra_items[0].name == "no_code_offers"
