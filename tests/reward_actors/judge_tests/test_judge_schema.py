"""Strict validation of the judge's answer, clipping, and E_judge from the configured weights."""

from __future__ import annotations

import json

import pytest

from repo_ray.domain.rubric import DEFAULT_JUDGE_WEIGHTS, JUDGE_ITEMS
from reward_actors.judge.schema import InvalidJudgeOutput, e_judge, parse_judge_answer


def answer(**items) -> str:
    scores = {k: {"score": 1.0, "reason": "fine"} for k in JUDGE_ITEMS}
    scores.update(items)
    return json.dumps({"scores": scores})


def test_e_judge_is_the_weighted_sum_over_items_with_a_score():
    weights = {k: 0.0 for k in JUDGE_ITEMS} | {"sop_compliance": 2.0, "price_pursuit": 0.5}
    v = parse_judge_answer(answer(sop_compliance={"score": 4, "reason": ""}, price_pursuit={"score": None}), weights)
    assert v.scores["price_pursuit"] is None
    assert v.e_judge == pytest.approx(2.0 * 4)
    assert e_judge({"a": 3.0, "b": None}, {"a": 2.0, "b": 5.0}) == 6.0


def test_scores_outside_the_range_are_clipped_and_long_reasons_cut():
    v = parse_judge_answer(answer(emotional_soothing={"score": 55, "reason": "x" * 999},
                                  persuasive_style={"score": -12.5, "reason": ""}), DEFAULT_JUDGE_WEIGHTS)
    assert v.scores["emotional_soothing"] == 10.0 and v.scores["persuasive_style"] == -10.0
    assert len(v.reasons["emotional_soothing"]) == 200


def test_unknown_items_are_ignored_whatever_their_shape():
    raw = json.loads(answer())
    raw["scores"]["charisma"] = 7
    v = parse_judge_answer(json.dumps(raw), DEFAULT_JUDGE_WEIGHTS)
    assert v.ignored_items == ("charisma",) and "charisma" not in v.scores


@pytest.mark.parametrize("content, fragment", [
    ("", "empty"),
    ("{\"scores\": ", "not JSON"),
    ("[1, 2]", "not an object"),
    (json.dumps({"verdict": "good"}), "no `scores`"),
    (answer(sop_compliance={"score": "7"}), "sop_compliance"),
    (answer(sop_compliance={"score": True}), "sop_compliance"),
    (answer(sop_compliance={"reason": "no score key"}), "sop_compliance"),
    ('{"scores": {"sop_compliance": {"score": NaN}}}', "non-finite"),
])
def test_malformed_answers_raise_invalid_output_naming_the_problem(content, fragment):
    with pytest.raises(InvalidJudgeOutput, match=fragment):
        parse_judge_answer(content, DEFAULT_JUDGE_WEIGHTS)


def test_an_answer_missing_a_rubric_item_is_invalid_not_a_silent_zero():
    raw = json.loads(answer())
    del raw["scores"]["silence_not_consent"]
    with pytest.raises(InvalidJudgeOutput, match="silence_not_consent"):
        parse_judge_answer(json.dumps(raw), DEFAULT_JUDGE_WEIGHTS)
