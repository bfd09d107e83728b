"""The training judge verifies before it pays (DESIGN.md §7): on seeded probes from the data
generator's expert dialogues (English and Chinese) the expert reply beats the same reply
with every price shifted and a keyword-stuffed two-price ask; false competitor figures,
the agent's own repeated inventions and keywords without content earn nothing; SOP
keywords never raise the SOP item. CPU only, no server (the heuristic reads the same
request messages the server gets); the last test goes through the real server."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from repo_ray.domain.scenario import Persona, RoomType, Scenario
from repo_ray.types import Message, Role
from reward_actors.judge.prompt import DATA_BEGIN, DATA_END, JudgeContext, build_judge_messages, split_data_block

from .judge_helpers import HISTORY, SCENARIO, context
from .judge_probes import expert_probes, keyword_stuffed, score, shift_prices, sop_stuffed

PROBE_SEED = 4242  # used nowhere else
PROBE_DIALOGUES = 70  # ~370 expert turns


def A(text: str) -> Message:
    return Message(Role.AGENT, text)


def H(text: str) -> Message:
    return Message(Role.HOTEL, text)


EVIDENCE = ("Similar hotels nearby sell the Deluxe King at ¥820 and ¥860 while yours is ¥900; the Standard Twin at "
            "¥540 and ¥560 while yours is ¥600.")
AFTER_EVIDENCE = (*HISTORY, A(EVIDENCE), H("Other hotels are not my problem."))
ZH = Scenario("judge-test-zh", "海湾酒店", "杭州", 4, "2027-05-01", "2027-05-03", Persona.HOSTILE, "zh",
              (RoomType("豪华大床房", 900.0, (820.0, 860.0), 800.0, 740.0),))
ZH_HISTORY = (A("您好，我是旅行平台的小李，想和您聊聊海湾酒店的房价。"), H("我们很忙，什么事？"))


def e_of(reply: str, history=HISTORY, scenario=SCENARIO) -> float:
    return score(JudgeContext(scenario, tuple(history), reply, "unknown"))[0]


def items_of(reply: str, history=HISTORY, scenario=SCENARIO) -> dict[str, float | None]:
    return score(JudgeContext(scenario, tuple(history), reply, "unknown"))[1]


@pytest.fixture(scope="module")
def probes():
    out = list(expert_probes(PROBE_DIALOGUES, PROBE_SEED))
    assert len(out) >= 300
    return out


def test_expert_beats_every_price_shifted_and_keyword_stuffed_variant_in_95_percent_of_probes(probes):
    wins: dict[tuple[str, str], list[bool]] = {}
    for k, p in enumerate(probes):
        rng = random.Random(f"{PROBE_SEED}:{k}")
        expert = score(p.context(p.expert))[0]
        shifted = shift_prices(p, rng)
        if shifted is not None:
            wins.setdefault(("shifted", p.scenario.language), []).append(expert > score(p.context(shifted))[0])
        stuffed = keyword_stuffed(p, rng)
        wins.setdefault(("stuffed", p.scenario.language), []).append(expert > score(p.context(stuffed))[0])
    assert {lang for _, lang in wins} == {"en", "zh"}
    for variant in ("shifted", "stuffed"):
        both = wins[(variant, "en")] + wins[(variant, "zh")]
        assert len(both) >= 150, (variant, len(both))
        assert sum(both) / len(both) >= 0.95, (variant, sum(both) / len(both))
        for lang in ("en", "zh"):  # neither language carries the other
            w = wins[(variant, lang)]
            assert sum(w) / len(w) >= 0.9, (variant, lang, sum(w) / len(w))


def test_sop_keywords_appended_to_any_expert_reply_never_raise_the_sop_item(probes):
    raised = [p.expert for p in probes
              if (score(p.context(sop_stuffed(p, p.expert)))[1]["sop_compliance"] or 0.0)
              > (score(p.context(p.expert))[1]["sop_compliance"] or 0.0)]
    assert raised == []


@pytest.mark.parametrize("reply", [
    "Hello there.",
    "I understand and appreciate it, thank you. Could you adjust the Deluxe King to ¥790 or ¥770?",
    "Similar hotels nearby sell the Deluxe King at ¥780.",  # a false figure
])
def test_sop_keywords_do_not_raise_the_sop_item_of_a_weak_reply(reply):
    for history in (HISTORY, AFTER_EVIDENCE):
        plain = items_of(reply, history)["sop_compliance"]
        for stuffing in (" I understand.", " Similar hotels nearby and competitors in the market.",
                         " To confirm the next steps.", " Thank you for your time, next steps follow."):
            assert items_of(reply + stuffing, history)["sop_compliance"] <= plain, stuffing


def test_a_false_competitor_price_scores_below_the_true_one_in_english_and_chinese():
    true_en = "I understand you're busy. " + EVIDENCE
    for false in ("¥780", "¥830"):
        bad = true_en.replace("¥820", false)
        assert e_of(bad) < e_of(true_en) - 20
        assert items_of(bad)["price_pursuit"] < items_of(true_en)["price_pursuit"]
    true_zh = "理解您比较忙。周边同类酒店的价格是：豪华大床房在¥820、¥860，您现在是¥900。"
    assert e_of(true_zh.replace("¥860", "¥840"), ZH_HISTORY, ZH) < e_of(true_zh, ZH_HISTORY, ZH) - 20
    # a false current price and a false concession anchor count as much as a false competitor price
    assert e_of(true_en.replace("¥900", "¥950")) < e_of(true_en) - 20
    concede = "I understand. Could you meet us at ¥860 for the Deluxe King, in line with competitors at ¥820?"
    assert e_of(concede.replace("¥820", "¥810"), AFTER_EVIDENCE) < e_of(concede, AFTER_EVIDENCE) - 20


def test_hotel_turns_are_evidence_and_the_agents_own_earlier_turns_are_not():
    claim = "I understand. Competitors sell the Deluxe King at ¥780, so could you adjust it to ¥800?"
    said_by_agent = (*HISTORY, A("Competitors sell the Deluxe King at ¥780."), H("Other hotels are not my problem."))
    said_by_hotel = (*HISTORY, A(EVIDENCE), H("The hotel next door charges ¥780 for the Deluxe King, so what?"))
    repeated = items_of(claim, said_by_agent)
    heard = items_of(claim, said_by_hotel)
    assert repeated["price_pursuit"] < 0 < heard["price_pursuit"]
    assert e_of(claim, said_by_agent) < e_of(claim, said_by_hotel) - 20


def test_an_offer_inside_floor_current_is_an_offer_and_grounded_offers_rank_first():
    def pursuit(reply):
        return items_of(reply, AFTER_EVIDENCE)["price_pursuit"]

    grounded = pursuit("Could you adjust the Deluxe King to ¥800 and the Standard Twin to ¥540?")  # the targets
    concession = pursuit("Could you adjust the Deluxe King to ¥860 and the Standard Twin to ¥560?")  # competitors
    unexplained = pursuit("Could you adjust the Deluxe King to ¥810 and the Standard Twin to ¥550?")
    hedged = pursuit("Could you adjust the Deluxe King to ¥810 or ¥790?")
    below_floor = pursuit("Could you adjust the Deluxe King to ¥700 and the Standard Twin to ¥540?")
    at_current = pursuit("Could you adjust the Deluxe King to ¥900 and the Standard Twin to ¥600?")
    assert grounded == concession > unexplained > 0 > hedged > below_floor
    assert at_current == below_floor  # no cut is no ask


def test_derived_figures_are_verified_and_wrong_ones_are_not():
    ok_pct = "I understand. Similar hotels nearby sell the Deluxe King at ¥820, about 9% below yours at ¥900."
    bad_pct = ok_pct.replace("9%", "25%")
    ok_diff = "I understand. Similar hotels nearby sell the Deluxe King at ¥820, ¥80 less than yours."
    bad_diff = ok_diff.replace("¥80", "¥130")
    assert items_of(ok_pct)["price_pursuit"] > 0 > items_of(bad_pct)["price_pursuit"]
    assert items_of(ok_diff)["price_pursuit"] > 0 > items_of(bad_diff)["price_pursuit"]


def test_keywords_alone_earn_nothing():
    hostile = HISTORY  # the hotel: "We're busy. What do you want?"
    bare, with_words = items_of("Hello there.", hostile), items_of("Hello there. I understand, thank you.", hostile)
    assert with_words["emotional_soothing"] == bare["emotional_soothing"] < 0  # sympathy without substance
    assert with_words["persuasive_style"] == bare["persuasive_style"]  # courtesy words without content
    confirm_word = items_of("To confirm: thank you.", AFTER_EVIDENCE)
    assert confirm_word["no_repeated_confirmation"] == 0.0  # nothing agreed to confirm
    market_words = items_of("Competitors, the market, similar hotels nearby: guests, visibility, ranking.", hostile)
    evidence = items_of(EVIDENCE, hostile)
    assert market_words["persuasive_style"] < evidence["persuasive_style"]
    assert market_words["sop_compliance"] < 0 < evidence["sop_compliance"]
    # with real content the same words do count
    soothed = items_of("I understand you're busy. " + EVIDENCE, hostile)
    assert soothed["emotional_soothing"] > 0


def test_a_misquoted_acceptance_or_confirmation_is_not_one():
    offered = (*AFTER_EVIDENCE, A("Could you adjust the Deluxe King to ¥800 and the Standard Twin to ¥540?"),
               H("We could do ¥790 for the Deluxe King, if that helps."))
    right = items_of("Great, ¥790 for the Deluxe King works for us, thank you!", offered)
    higher = items_of("Great, ¥810 for the Deluxe King works for us, thank you!", offered)
    lower = items_of("Great, ¥770 for the Deluxe King works for us, thank you!", offered)
    assert right["immediate_acceptance"] == 9.0
    assert higher["immediate_acceptance"] < 0 and lower["immediate_acceptance"] < 0
    agreed = (*AFTER_EVIDENCE, A("Could you adjust the Deluxe King to ¥800 and the Standard Twin to ¥540?"),
              H("OK, ¥800 works for the Deluxe King. Fine, we can do ¥540 for the Standard Twin."))
    good = items_of("To confirm: the Deluxe King at ¥800; the Standard Twin at ¥540, for 2027-05-01 – 2027-05-03.",
                    agreed)
    wrong = items_of("To confirm: the Deluxe King at ¥780; the Standard Twin at ¥540, for 2027-05-01 – 2027-05-03.",
                     agreed)
    assert good["sop_compliance"] > 0 > wrong["sop_compliance"]


def test_the_prompt_carries_every_scenario_figure_and_no_keyword_read_stage():
    msgs = build_judge_messages(context(EVIDENCE), "v1")
    block, outside = split_data_block(msgs[1]["content"])
    data = json.loads(block)
    figures = [(r["current_price"], r["competitor_prices"], r["target_price"], r["floor_price"])
               for r in data["room_types"]]
    assert figures == [(900.0, [820.0, 860.0], 800.0, 740.0), (600.0, [540.0, 560.0], 540.0, 500.0)]
    assert (data["hotel"]["check_in"], data["hotel"]["check_out"], data["hotel"]["star_rating"]) == (
        "2027-05-01", "2027-05-03", 4)
    # the pipeline's stage is the reply's own keyword reading: the judge infers the stage itself
    assert "sop_stage" not in data
    system = msgs[0]["content"]
    assert "agent's own earlier turns are not" in system and "keywords alone" in system
    assert DATA_BEGIN not in outside and DATA_END not in outside


def test_the_server_judges_from_the_request_alone(server):
    """The same reply under two scenarios that differ only in one competitor price: the
    server, which sees nothing but the HTTP request, verifies the figure in one and not the
    other — exactly as the in-process heuristic does."""
    reply = "I understand you're busy. Similar hotels nearby sell the Deluxe King at ¥820 and ¥860."
    moved = Scenario(SCENARIO.scenario_id, SCENARIO.hotel_name, SCENARIO.city, SCENARIO.star_rating,
                     SCENARIO.check_in, SCENARIO.check_out, SCENARIO.persona, SCENARIO.language,
                     (RoomType("Deluxe King", 900.0, (830.0, 860.0), 800.0, 740.0), SCENARIO.room_types[1]))
    got = {}
    for name, sc in (("true", SCENARIO), ("moved", moved)):
        ctx = JudgeContext(sc, HISTORY, reply, "evidence")
        resp = httpx.post(f"{server.base_url}/chat/completions", timeout=10,
                          json={"model": "repo-judge", "messages": build_judge_messages(ctx, "v1")})
        resp.raise_for_status()
        answer = json.loads(resp.json()["choices"][0]["message"]["content"])
        got[name] = {k: v["score"] for k, v in answer["scores"].items()}
        assert got[name] == score(ctx)[1]
    assert got["true"]["price_pursuit"] > 0 > got["moved"]["price_pursuit"]
