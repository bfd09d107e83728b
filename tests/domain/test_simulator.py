"""The hotel simulator: personas answer what the agent asks, deterministically."""

import pytest

from repo_ray.domain.scenario import Persona, RoomType, Scenario
from repo_ray.domain.simulator import HotelSimulator
from repo_ray.domain.sop import SopStage, classify_stage

ROOM = RoomType("Deluxe King", current_price=600, competitor_prices=(540, 560), target_price=520, floor_price=480)
TWIN = RoomType("Standard Twin", current_price=400, competitor_prices=(350,), target_price=360, floor_price=330)


def scenario(persona, rooms=(ROOM,), language="en"):
    return Scenario("sc-1", "Harbor Hotel", "Xiamen", 4, "2027-03-01", "2027-03-03", persona, language, rooms)


OPENING = "Hi, this is Alex from the travel platform, calling about your room prices."
EVIDENCE = "Similar hotels nearby sell the Deluxe King at ¥540 and ¥560 while yours is ¥600."


def ask(price):
    return f"Could you adjust the Deluxe King to ¥{price}?"


def after_warmup(persona, **kw):
    sim = HotelSimulator(scenario(persona, **kw), seed=7)
    sim.reply(OPENING)
    sim.reply(EVIDENCE)
    return sim


@pytest.mark.parametrize("persona", list(Persona))
def test_each_persona_answers_a_low_and_a_high_ask_differently(persona):
    low, high = after_warmup(persona), after_warmup(persona)
    low_turn, high_turn = low.reply(ask(480)), high.reply(ask(590))
    assert low_turn.text != high_turn.text
    assert high_turn.agreed == {"Deluxe King": 590.0}
    assert "Deluxe King" not in low_turn.agreed


def test_personas_differ_from_each_other_on_the_same_low_ask():
    replies = {p: after_warmup(p).reply(ask(480)) for p in Persona}
    assert len({r.text for r in replies.values()}) == len(Persona)
    assert replies[Persona.SILENT].silent
    assert replies[Persona.COOPERATIVE].offered == {"Deluxe King": 520.0}  # counters at its reservation
    assert replies[Persona.PRICE_ANCHORED].offered["Deluxe King"] > 520.0


def test_price_anchored_counters_converge_and_its_own_offer_binds():
    sim = after_warmup(Persona.PRICE_ANCHORED)
    counters = [sim.reply(ask(500)).offered["Deluxe King"] for _ in range(3)]
    assert counters[0] > counters[1] > counters[2] >= 520
    assert sim.reply(ask(int(counters[2]))).agreed == {"Deluxe King": counters[2]}


def test_hesitant_needs_evidence_before_moving():
    cold = HotelSimulator(scenario(Persona.HESITANT))
    cold.reply(OPENING)
    assert cold.reply(ask(560)).agreed == {}
    warm = after_warmup(Persona.HESITANT)
    assert warm.reply(ask(560)).agreed == {"Deluxe King": 560.0}


def test_hostile_hangs_up_after_repeated_pushing():
    sim = after_warmup(Persona.HOSTILE)
    turns = [sim.reply(ask(500)) for _ in range(3)]
    assert turns[-1].ended and not turns[0].ended
    with pytest.raises(RuntimeError, match="already ended"):
        sim.reply(ask(500))


def test_partial_agrees_for_the_first_room_type_only():
    sim = after_warmup(Persona.PARTIAL, rooms=(ROOM, TWIN))
    turn = sim.reply("Could you adjust the Deluxe King to ¥520 and the Standard Twin to ¥360?")
    assert turn.agreed == {"Deluxe King": 520.0}
    assert turn.refused == {"Standard Twin"}
    assert turn.asked == {"Deluxe King": 520.0, "Standard Twin": 360.0}


def test_evidence_prices_are_not_asks_and_asks_above_current_are_not_deals():
    sim = after_warmup(Persona.COOPERATIVE)
    assert sim.agreed == {}
    assert sim.reply(ask(650)).agreed == {}


def test_confirmation_twice_irritates_and_close_ends():
    sim = after_warmup(Persona.COOPERATIVE)
    sim.reply(ask(520))
    first = sim.reply("To confirm: the Deluxe King at ¥520, for 2027-03-01 – 2027-03-03.")
    again = sim.reply("To confirm: the Deluxe King at ¥520, for 2027-03-01 – 2027-03-03.")
    assert first.text != again.text and first.agreed == again.agreed
    assert sim.reply("Thank you for your time! Next steps follow by message.").ended


def test_replies_are_deterministic_for_a_seed():
    def transcript(seed):
        sim = HotelSimulator(scenario(Persona.PRICE_ANCHORED), seed=seed)
        return [sim.reply(t).text for t in (OPENING, EVIDENCE, ask(500), ask(540))]

    assert transcript(1) == transcript(1)


def test_chinese_scenario_gets_chinese_replies():
    room = RoomType("豪华大床房", 600, (540,), 520, 480)
    sim = HotelSimulator(scenario(Persona.COOPERATIVE, rooms=(room,), language="zh"))
    sim.reply("您好，我是旅行平台的小李，想和您聊聊房价。")
    turn = sim.reply("能否把豪华大床房调整到¥520？")
    assert turn.agreed == {"豪华大床房": 520.0}
    assert any("\u4e00" <= ch <= "\u9fff" for ch in turn.text)


@pytest.mark.parametrize(
    "text, stage",
    [
        (OPENING, SopStage.OPENING),
        (EVIDENCE, SopStage.EVIDENCE),
        (ask(520), SopStage.ASK),
        ("I understand. Could you meet us at ¥540 for the Deluxe King?", SopStage.OBJECTION),
        ("To confirm: the Deluxe King at ¥520.", SopStage.CONFIRMATION),
        ("Thank you for your time! Next steps by message.", SopStage.CLOSE),
        ("asdf qwer", SopStage.UNKNOWN),
        ("周边同类酒店的价格是：豪华大床房在¥540", SopStage.EVIDENCE),
    ],
)
def test_stage_classifier(text, stage):
    assert classify_stage(text) is stage
