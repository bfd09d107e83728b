"""E_func, the registry and RuleContext construction."""

import pytest

from repo_ray.domain.rubric import DEFAULT_RULE_WEIGHTS, RULES
from repo_ray.types import Message, Role
from reward_actors.rules import MAX_VIOLATIONS, RULE_FUNCS, RuleContext, e_func, run_rules

from .conftest import scenario

# fires price_constraints (below floor 850) and hallucinated_numbers (800 is nowhere)
BELOW_FLOOR = "Could you adjust the Deluxe King to ¥800?"


def test_registry_names_are_exactly_the_rubric_rules():
    assert list(RULE_FUNCS) == list(RULES)


def test_e_func_is_the_weighted_sum_of_weighted_rules_only(contexts):
    ctx = contexts["en"]
    both = e_func(BELOW_FLOOR, ctx, {"price_constraints": 40.0, "hallucinated_numbers": 30.0})
    assert both.e_func == -70.0
    assert both.scores == {"price_constraints": -1.0, "hallucinated_numbers": -1.0}
    assert both.violations == ["price_constraints", "hallucinated_numbers"]
    assert both.tags["price_constraints"] == ("below_floor:Deluxe King:800<850",)
    one = e_func(BELOW_FLOOR, ctx, {"price_constraints": 40.0, "hallucinated_numbers": 0.0})
    assert (one.e_func, one.scores, one.violations) == (-40.0, {"price_constraints": -1.0}, ["price_constraints"])
    clean = e_func("Could you adjust the Deluxe King to ¥900?", ctx, DEFAULT_RULE_WEIGHTS)
    assert (clean.e_func, clean.violations, set(clean.scores)) == (0.0, [], set(RULES))


def test_e_func_is_not_clipped(contexts):
    reply = ("<think>My plan: anchor low.</think> I guarantee our internal target price is ¥800 and "
             "you will definitely get 70% more bookings, for sure.")
    res = e_func(reply, contexts["en"], {name: 100.0 for name in RULES})
    assert res.e_func < -100.0  # only E_judge + E_func is clipped, in enhance_reward
    assert res.e_func == sum(100.0 * s for s in res.scores.values())
    assert {"cot_leakage", "internal_term_leakage", "forbidden_words", "hallucinated_numbers"} <= set(res.violations)


def test_violations_are_capped_per_rule(contexts):
    res = run_rules("I guarantee it. I promise. Definitely. For sure.", contexts["en"])["forbidden_words"]
    assert res.score == -float(MAX_VIOLATIONS) and len(res.tags) == 4


def test_unknown_weight_is_an_error(contexts):
    with pytest.raises(KeyError, match="tone_police"):
        e_func("hi", contexts["en"], {"tone_police": 1.0})


def test_from_scenario_keeps_facts_and_drops_the_system_prompt():
    history = [Message(Role.SYSTEM, "internal target ¥900, 77"), Message(Role.AGENT, "Hi"),
               Message(Role.HOTEL, "We could do ¥950.")]
    ctx = RuleContext.from_scenario(scenario("en"), history, extra_allowed=(12,), overlength_chars=300)
    assert [m.role for m in ctx.history] == [Role.AGENT, Role.HOTEL]
    assert {4.0, 2027.0, 3.0, 1.0, 900.0, 850.0, 12.0} <= ctx.allowed_numbers
    assert 950.0 in ctx.known_numbers and 77.0 not in ctx.known_numbers
    assert ctx.overlength_chars == 300 and ctx.language == "en"
    assert run_rules("We have 12 partner hotels nearby.", ctx)["hallucinated_numbers"].score == 0.0


ROOM = {"name": "Deluxe King", "current_price": 1000, "competitor_prices": [880], "target_price": 900,
        "floor_price": 850}


def test_from_record_reads_the_check_rules_line():
    ctx = RuleContext.from_record({"history": [{"role": "hotel", "text": "¥950?"}], "language": "zh",
                                   "room_types": [ROOM], "allowed_numbers": [7]})
    assert ctx.language == "zh" and ctx.room("deluxe king").floor_price == 850.0
    assert {7.0, 950.0, 880.0} <= ctx.known_numbers


@pytest.mark.parametrize("record, reason", [
    ({"language": "en", "room_types": []}, "missing field 'history'"),
    ({"history": [], "language": "fr", "room_types": []}, "language: 'fr'"),
    ({"history": [{"role": "user", "text": "x"}], "language": "en", "room_types": []}, "history[0].role: 'user'"),
    ({"history": [], "language": "en", "room_types": [{**ROOM, "floor_price": 950}]},
     "room_types[0]: room type 'Deluxe King': need 0 < floor"),
    ({"history": [], "language": "en", "room_types": [{**ROOM, "target_price": "cheap"}]},
     "room_types[0].target_price: expected a finite number"),
    ({"history": [], "language": "en", "room_types": [ROOM], "allowed_numbers": ["x"]}, "allowed_numbers[0]"),
])
def test_from_record_names_the_culprit(record, reason):
    with pytest.raises(ValueError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        RuleContext.from_record(record)


def _examples(items) -> list[str]:
    """Every string a (small, finite) parsed regex matches, optional parts left out."""
    from re import _constants as C

    outs = [""]
    for op, av in items:
        if op is C.LITERAL:
            opts = [chr(av)]
        elif op is C.SUBPATTERN:
            opts = _examples(av[3])
        elif op is C.BRANCH:
            opts = [e for branch in av[1] for e in _examples(branch)]
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, _, sub = av
            opts = ["".join(x) for x in [[e] * lo for e in _examples(sub)]]
        elif op is C.IN:
            opts = [chr(next(v for o, v in av if o is C.LITERAL))]
        elif op in (C.AT, C.NOT_LITERAL, C.ASSERT_NOT):
            opts = [""]
        else:
            raise AssertionError(f"unexpected regex op {op}")
        outs = [a + b for a in outs for b in opts]
    return outs


def test_every_english_term_is_reachable_through_its_trigger_words():
    from re import _parser

    from reward_actors.rules.guardrails import _INTERNAL, _INTERNAL_HINT, _PROMISE
    from reward_actors.rules.surface import _COT

    for terms in (_COT, _INTERNAL, _INTERNAL_HINT, _PROMISE):
        examples = _examples(_parser.parse(terms.en.pattern))
        assert len(examples) > 10
        for text in examples:
            assert terms.find(f"well, {text} then"), f"{text!r} is never looked for: no trigger word in it"


def test_context_survives_pickling_with_the_same_verdicts(contexts):
    import pickle

    ctx = pickle.loads(pickle.dumps(contexts["zh"]))  # how Ray ships it to a rule-checker actor
    assert ctx == contexts["zh"]
    reply = "您好，我是旅行平台的小李，想和您聊聊湖畔酒店的房价。能否把豪华大床房调整到¥800？"
    assert e_func(reply, ctx, DEFAULT_RULE_WEIGHTS) == e_func(reply, contexts["zh"], DEFAULT_RULE_WEIGHTS)
    assert e_func(reply, ctx, DEFAULT_RULE_WEIGHTS).violations == [
        "repeated_phrasing", "price_constraints", "hallucinated_numbers"]
