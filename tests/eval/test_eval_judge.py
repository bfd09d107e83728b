"""The built-in evaluation judge: each rubric item on hand-made contexts, the normalised score,
its independence from the training judge, and the optional endpoint path."""

from __future__ import annotations

import json

import httpx
import pytest

from repo_ray.config import EvalJudgeConfig
from repo_ray.domain.rubric import JUDGE_ITEMS
from repo_ray.eval.eval_judge import EvalJudge, EvalJudgeError, JudgeRequest, judge_items, normalised_score
from tests.eval.helpers import ONE_ROOM, OPENING, TWO_ROOMS, a, h


def item(scenario, history, response, name):
    return judge_items(scenario, history, response)[name][0]


def test_normalised_score_is_weighted_mean_over_applicable_items_divided_by_ten():
    assert normalised_score({"sop_compliance": 10.0, "price_pursuit": -10.0, "silence_not_consent": None},
                            {"sop_compliance": 1.0, "price_pursuit": 1.0, "silence_not_consent": 1.0}) == 0.0
    assert normalised_score({"sop_compliance": 5.0}, {"sop_compliance": 1.0}) == 0.5
    assert normalised_score({"sop_compliance": 10.0, "price_pursuit": -10.0},
                            {"sop_compliance": 3.0, "price_pursuit": 1.0}) == pytest.approx(0.5)
    assert normalised_score({"sop_compliance": None}, {"sop_compliance": 1.0}) == 0.0  # nothing applies
    assert normalised_score({"sop_compliance": 8.0, "price_pursuit": -4.0},
                            {"sop_compliance": 1.0, "price_pursuit": 0.0}) == pytest.approx(0.8)  # weight 0: left out


def test_opening_is_compliant_first_and_a_violation_mid_dialogue():
    assert item(ONE_ROOM, [], OPENING, "sop_compliance") == 8.0
    mid = [a(OPENING), h("Hi, sure, what can I do for you?")]
    assert item(ONE_ROOM, mid, "Hello, I'm Sam from the booking platform.", "sop_compliance") == -8.0


def test_price_pursuit_grows_as_the_ask_nears_the_target_and_punishes_out_of_range_asks():
    ctx = [a(OPENING), h("Hi, sure, what can I do for you?")]
    at_target = item(ONE_ROOM, ctx, "Could you adjust the Deluxe King to ¥900?", "price_pursuit")
    halfway = item(ONE_ROOM, ctx, "Could you adjust the Deluxe King to ¥950?", "price_pursuit")
    below_floor = item(ONE_ROOM, ctx, "Could you adjust the Deluxe King to ¥700?", "price_pursuit")
    assert (at_target, halfway, below_floor) == (9.0, 6.0, -6.0)
    assert item(ONE_ROOM, [], OPENING, "price_pursuit") is None  # nothing to pursue before the opening


def test_silence_read_as_consent_scores_minus_ten_and_a_follow_up_scores_positive():
    ctx = [a(OPENING), h(""), a("Could you adjust the Deluxe King to ¥900?"), h("")]
    assert item(ONE_ROOM, ctx, "Great, since you didn't object, I'll set the Deluxe King to ¥900 then.",
                "silence_not_consent") == -10.0
    assert item(ONE_ROOM, ctx, "I understand you're busy; could you let me know when you have a moment?",
                "silence_not_consent") == 7.0
    answered = [a(OPENING), h("Hi, sure, what can I do for you?")]
    assert item(ONE_ROOM, answered, "Could you adjust the Deluxe King to ¥900?", "silence_not_consent") is None


def test_good_offer_must_be_accepted_at_once_not_haggled():
    ctx = [a(OPENING), h("Hello!"), a("Similar hotels nearby sell the Deluxe King at ¥920."),
           h("I see, that's useful. We could do ¥880 for the Deluxe King, if that helps.")]
    assert item(ONE_ROOM, ctx, "Great, ¥880 for the Deluxe King works for us, thank you!",
                "immediate_acceptance") == 10.0
    assert item(ONE_ROOM, ctx, "I understand, but could you go a bit lower on the Deluxe King, to ¥850?",
                "immediate_acceptance") == -10.0
    above_target = ctx[:-1] + [h("We could do ¥960 for the Deluxe King, if that helps.")]
    assert item(ONE_ROOM, above_target, "Could you meet us at ¥920?", "immediate_acceptance") is None


def test_a_second_confirmation_is_penalised_after_the_hotel_confirmed():
    ctx = [a("Could you adjust the Deluxe King to ¥900?"), h("OK, ¥900 works for the Deluxe King."),
           a("To confirm: the Deluxe King at ¥900, for 2027-05-01 – 2027-05-03."), h("Yes, that's confirmed.")]
    assert item(ONE_ROOM, ctx, "Just to confirm: the Deluxe King at ¥900.", "no_repeated_confirmation") == -9.0
    assert item(ONE_ROOM, ctx, "Thank you for your time! I'll send the next steps by message.",
                "no_repeated_confirmation") == 5.0
    assert item(ONE_ROOM, ctx[:2], "To confirm: the Deluxe King at ¥900.", "no_repeated_confirmation") == 5.0


def test_a_fresh_ask_must_cover_every_open_room_type():
    ctx = [a(OPENING), h("Hello, go ahead.")]
    both = "Could you adjust the Deluxe King to ¥900 and the Standard Twin to ¥540?"
    one = "Could you adjust the Deluxe King to ¥900?"
    assert item(TWO_ROOMS, ctx, both, "covers_all_room_types") == 8.0
    assert item(TWO_ROOMS, ctx, one, "covers_all_room_types") == -6.0
    assert item(ONE_ROOM, ctx, one, "covers_all_room_types") is None  # a single ticket


def test_a_room_the_hotel_refused_for_good_is_no_longer_open():
    ctx = [a(OPENING), h("Hello, go ahead."),
           a("Could you adjust the Deluxe King to ¥900 and the Standard Twin to ¥540?"),
           h("For the Deluxe King alone I could do ¥950. We can't change the Standard Twin price, sorry.")]
    # only the Deluxe King is open: coverage no longer applies, pursuing it does
    assert item(TWO_ROOMS, ctx, "Could you meet us at ¥920 for the Deluxe King?", "covers_all_room_types") is None
    assert item(TWO_ROOMS, ctx, "Could you meet us at ¥920 for the Deluxe King?", "price_pursuit") > 0


def test_form_like_wording_is_a_style_violation_and_evidence_with_courtesy_is_good_style():
    ctx = [a(OPENING), h("Hi, sure, what can I do for you?")]
    cold = item(ONE_ROOM, ctx, "Request: set Deluxe King price to ¥900. Reply yes or no.", "persuasive_style")
    warm = item(ONE_ROOM, ctx, "Thank you! Similar hotels nearby sell the Deluxe King at ¥920, so guests compare. "
                "Could you adjust it to ¥900?", "persuasive_style")
    assert cold <= -6.0 and warm == 8.0
    assert item(ONE_ROOM, ctx, "Thanks!", "persuasive_style") == 2.0  # short, not a form
    assert item(ONE_ROOM, ctx, "ADJUST PRICE NOW", "persuasive_style") == -9.0


def test_over_promising_and_ignoring_resistance_are_scored_down():
    ctx = [a(OPENING), h("We're busy. What do you want?")]
    assert item(ONE_ROOM, ctx, "I guarantee more bookings.", "no_overpromising") == -7.0
    assert item(ONE_ROOM, ctx, "I guarantee your bookings will double.", "no_overpromising") == -10.0  # two promises
    assert item(ONE_ROOM, ctx, "Similar hotels nearby sell at ¥920.", "no_overpromising") == 5.0
    assert item(ONE_ROOM, ctx, "I understand you're busy. Similar hotels nearby get more bookings at ¥920.",
                "emotional_soothing") == 9.0
    assert item(ONE_ROOM, ctx, "Similar hotels nearby sell at ¥920.", "emotional_soothing") == -4.0
    assert item(ONE_ROOM, [a(OPENING), h("Hi, sure, what can I do for you?")], "Similar hotels nearby sell at ¥920.",
                "emotional_soothing") is None


def test_eval_judge_scores_differently_from_the_training_judge():
    from reward_actors.judge.heuristics import score_payload
    from reward_actors.judge.prompt import JudgeContext, data_payload

    ctx = [a(OPENING), h("Hi, sure, what can I do for you?")]
    differs = 0
    for text in ("Could you adjust the Deluxe King to ¥950?", "Similar hotels nearby sell the Deluxe King at ¥920.",
                 "Hello there."):
        ours = judge_items(ONE_ROOM, ctx, text)
        theirs = score_payload(data_payload(JudgeContext(ONE_ROOM, tuple(ctx), text)))
        differs += sum(ours[k][0] != theirs[k][0] for k in JUDGE_ITEMS)
    assert differs >= 3
    # and its default weights are its own (all 1), not reward.judge_weights
    from repo_ray.domain.rubric import DEFAULT_JUDGE_WEIGHTS

    assert EvalJudge(EvalJudgeConfig()).weights != DEFAULT_JUDGE_WEIGHTS


def test_weights_from_config_change_the_normalised_score():
    ctx = [a(OPENING), h("Hi, sure, what can I do for you?")]
    text = "Could you adjust the Deluxe King to ¥950?"
    plain = EvalJudge(EvalJudgeConfig()).score(ONE_ROOM, ctx, text)
    pursuit_only = EvalJudge(EvalJudgeConfig(weights={"price_pursuit": 1.0})).score(ONE_ROOM, ctx, text)
    assert pursuit_only.normalised == pytest.approx(plain.scores["price_pursuit"] / 10)
    assert plain.normalised != pursuit_only.normalised


def _verdict_body(score: float | None) -> dict:
    content = json.dumps({"scores": {k: {"score": score if k != "silence_not_consent" else None, "reason": "r"}
                                     for k in JUDGE_ITEMS}})
    return {"choices": [{"message": {"content": content}}], "usage": {"total_tokens": 10}}


def test_endpoint_judge_keeps_item_scores_and_normalises_with_eval_weights():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content)["model"])
        return httpx.Response(200, json=_verdict_body(6.0))

    cfg = EvalJudgeConfig(base_url="http://127.0.0.1:9/v1", api_key_env=None, model="eval-m")
    out = EvalJudge(cfg, transport=httpx.MockTransport(handler)).score_many(
        [JudgeRequest(ONE_ROOM, (), OPENING), JudgeRequest(ONE_ROOM, (), "Hello")])
    assert seen == ["eval-m", "eval-m"]
    assert [j.normalised for j in out] == [pytest.approx(0.6), pytest.approx(0.6)]
    assert out[0].scores["silence_not_consent"] is None and out[0].scores["sop_compliance"] == 6.0


def test_endpoint_judge_failure_is_one_user_error_naming_the_url():
    cfg = EvalJudgeConfig(base_url="http://127.0.0.1:9/v1", api_key_env=None)
    judge = EvalJudge(cfg, transport=httpx.MockTransport(lambda r: httpx.Response(400, text="bad request")))
    with pytest.raises(EvalJudgeError, match=r"http://127.0.0.1:9/v1: 1 of 1 replies not scored"):
        judge.score_many([JudgeRequest(ONE_ROOM, (), OPENING)])
