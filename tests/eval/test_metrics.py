"""Every evaluation metric on hand-made dialogues and bad cases with known answers."""

from __future__ import annotations

import pytest

from repo_ray.domain.defects import Severity
from repo_ray.eval.metrics import (
    METRICS,
    BadCaseOutcome,
    BadCaseRecord,
    DialogueRecord,
    bad_case_verdict,
    bootstrap_ratio,
    capabilities,
    compute_metrics,
    dialogue_rating,
    gain,
    has_excellent,
    paired_difference,
    ticket_outcomes,
)
from tests.eval.helpers import ONE_ROOM, TWO_ROOMS, a, h, reply


def metrics_of(dialogues=(), cases=(), threshold=0.6, samples=200):
    return compute_metrics(list(dialogues), list(cases), excellent_threshold=threshold, bootstrap_samples=samples,
                           confidence=0.9, seed=3)


def dialogue(did="d", responses=None, hotel=("Hi, sure.",), agreed=None, deal_turns=None, scenario=ONE_ROOM):
    responses = responses if responses is not None else [reply()]
    transcript = []
    for i, _ in enumerate(responses):
        transcript.append(a(f"agent {i}"))
        transcript.append(h(hotel[i] if i < len(hotel) else ""))
    return DialogueRecord(did, scenario, transcript, responses, dict(agreed or {}), deal_turns)


# ---------------------------------------------------------------------------- rating and excellence
def test_rating_is_the_mean_over_replies_of_each_replys_score_with_its_worst_problem():
    assert dialogue_rating([reply(0.5), reply(0.5)]) == 4.0  # 3 + 2 * 0.5 per reply
    assert dialogue_rating([reply(1.0)]) == 5.0
    assert dialogue_rating([reply(-1.0)]) == 1.0
    assert dialogue_rating([reply(0.25)]) == pytest.approx(3.5)  # not rounded: ratings spread
    major = {"hallucinated_numbers": ["unknown:37"]}
    assert dialogue_rating([reply(0.5), reply(0.5, rules=major)]) == pytest.approx(3.0)  # (4 + (4 - 2)) / 2
    minor = {"mixed_language": ["han_chars:4"]}
    assert dialogue_rating([reply(0.5, rules=minor), reply(0.5, rules=minor)]) == pytest.approx(3.0)  # 4 - 1 each
    # a reply counts its worst problem once: major + minor on one reply costs 2
    assert dialogue_rating([reply(0.5, rules={**major, **minor})]) == pytest.approx(2.0)
    severe = {"internal_term_leakage": ["term:floor price"]}
    assert dialogue_rating([reply(1.0, rules=severe)]) == 1.0  # 5 - 4
    # a judge item at or below -5 is a problem too (sop_compliance: wrong_sop_stage, major)
    assert dialogue_rating([reply(0.5, items={"sop_compliance": -6.0})]) == pytest.approx(2.0)
    assert dialogue_rating([reply(0.5, items={"sop_compliance": -4.0})]) == 4.0  # not a clear violation


def test_rating_combines_problems_per_reply_so_length_does_not_pile_ratings_at_1():
    major = {"hallucinated_numbers": ["unknown:37"]}
    one_per_turn = [reply(0.5, turn=k, rules=major) for k in range(6)]
    assert dialogue_rating(one_per_turn) == dialogue_rating(one_per_turn[:1]) == pytest.approx(2.0)
    m = metrics_of([dialogue("a", [reply(0.5)]), dialogue("b", [reply(0.5, rules=major)]),
                    dialogue("c", [reply(0.24)]), dialogue("d", [reply(-1.0)])])
    assert m.rating_counts == {1: 1, 2: 1, 3: 1, 4: 1, 5: 0}  # 4, 2, 3.48 (rounds to 3), 1
    assert m["rating"].value == pytest.approx((4.0 + 2.0 + 3.48 + 1.0) / 4)


def test_excellent_needs_the_threshold_and_no_rule_violation():
    assert has_excellent([reply(0.1), reply(0.7)], 0.6)
    assert not has_excellent([reply(0.7, rules={"overlength": ["chars:900>600"]})], 0.6)
    assert not has_excellent([reply(0.59)], 0.6)
    m = metrics_of([dialogue("x", [reply(0.1), reply(0.7)]), dialogue("y", [reply(0.5)])])
    assert m["excellent_share"].value == 0.5
    assert m["rating"].value == pytest.approx(3.9)  # (3.2 + 4.4) / 2 = 3.8, and 4.0


# ---------------------------------------------------------------------------- bad cases
def case(defect, severity, **kw):
    return BadCaseRecord("c-" + defect, defect, severity, reply(**kw))


def test_bad_case_defect_still_present_is_unresolved_and_severe_only_for_severe_cases():
    v = bad_case_verdict(case("hallucinated_number", "major", rules={"hallucinated_numbers": ["unknown:37"]}))
    assert (v.outcome, v.severe_unresolved) == (BadCaseOutcome.UNRESOLVED, False)
    v = bad_case_verdict(case("leaked_internal_term", "severe", rules={"internal_term_leakage": ["term:floor price"]}))
    assert (v.outcome, v.severe_unresolved) == (BadCaseOutcome.UNRESOLVED, True)
    v = bad_case_verdict(case("silence_as_consent", "severe", items={"silence_not_consent": -10.0}))
    assert (v.outcome, v.severe_unresolved) == (BadCaseOutcome.UNRESOLVED, True)


def test_bad_case_defect_gone_with_nothing_else_is_a_clean_fix():
    assert bad_case_verdict(case("hallucinated_number", "major")).outcome is BadCaseOutcome.CLEAN_FIX
    assert bad_case_verdict(case("silence_as_consent", "severe", items={"silence_not_consent": 7.0})).outcome \
        is BadCaseOutcome.CLEAN_FIX
    # a mildly low item (above -5) is a weakness, not a problem
    assert bad_case_verdict(case("hallucinated_number", "major", items={"sop_compliance": -3.0})).outcome \
        is BadCaseOutcome.CLEAN_FIX


def test_bad_case_defect_gone_but_a_new_problem_is_a_fix_with_a_problem_not_a_clean_fix():
    v = bad_case_verdict(case("hallucinated_number", "major", rules={"mixed_language": ["cjk_chars:3"]}))
    assert v.outcome is BadCaseOutcome.FIX_MINOR and v.new_problems == {"mixed_language": Severity.MINOR}
    v = bad_case_verdict(case("cold_robotic_tone", "minor", items={"sop_compliance": -8.0}))
    assert v.outcome is BadCaseOutcome.FIX_MAJOR and v.new_problems == {"wrong_sop_stage": Severity.MAJOR}
    v = bad_case_verdict(case("mixed_language", "minor", items={"emotional_soothing": -6.0}))
    assert v.outcome is BadCaseOutcome.FIX_MINOR and v.new_problems == {"ignored_concern": Severity.MINOR}
    # a severe new problem counts as "major or worse"
    v = bad_case_verdict(case("overlong", "minor", rules={"internal_term_leakage": ["term:work order"]}))
    assert v.outcome is BadCaseOutcome.FIX_MAJOR and not v.severe_unresolved


def test_price_rule_tags_tell_below_floor_from_above_current():
    # the case was below the floor; the reply now asks above the current price: fixed, with a major problem
    v = bad_case_verdict(case("price_below_floor", "severe",
                              rules={"price_constraints": ["above_current:Deluxe King:1100>1000"]}))
    assert v.outcome is BadCaseOutcome.FIX_MAJOR and v.new_problems == {"price_above_current": Severity.MAJOR}
    v = bad_case_verdict(case("price_below_floor", "severe",
                              rules={"price_constraints": ["below_floor:Deluxe King:700<850"]}))
    assert v.outcome is BadCaseOutcome.UNRESOLVED and v.severe_unresolved


def test_bad_case_rates_and_fix_is_the_sum_of_the_three_fix_outcomes():
    cases = [
        case("hallucinated_number", "major"),  # clean
        case("overlong", "minor", rules={"mixed_language": ["x"]}),  # minor
        case("cold_robotic_tone", "minor", items={"sop_compliance": -8.0}),  # major
        case("leaked_internal_term", "severe", rules={"internal_term_leakage": ["term:x"]}),  # severe unresolved
    ]
    m = metrics_of(cases=cases)
    got = {k: m[f"bad_case.{k}"].value for k in ("fix", "clean_fix", "fix_minor", "fix_major", "unresolved",
                                                 "severe_unresolved")}
    assert got == {"fix": 0.75, "clean_fix": 0.25, "fix_minor": 0.25, "fix_major": 0.25, "unresolved": 0.25,
                   "severe_unresolved": 0.25}
    assert m.outcome_counts == {"clean_fix": 1, "fix_minor": 1, "fix_major": 1, "unresolved": 1}


# ---------------------------------------------------------------------------- capabilities
def test_each_capability_fails_on_its_own_signal():
    good = [reply(0.5, items={"persuasive_style": 3.0, "sop_compliance": 7.0, "price_pursuit": 9.0})]
    base = capabilities(dialogue(responses=good, agreed={"Deluxe King": 900.0}))
    assert base == {"dialogue_fluency": True, "workflow_compliance": True, "negotiation_effectiveness": True,
                    "domain_understanding": True}

    def caps(responses, **kw):
        return capabilities(dialogue(responses=responses, **{"agreed": {"Deluxe King": 900.0}, **kw}))

    assert not caps(good + [reply(rules={"repeated_phrasing": ["x"]})])["dialogue_fluency"]
    assert not caps(good + [reply(items={"persuasive_style": -1.0})])["dialogue_fluency"]
    assert caps(good + [reply(rules={"cot_leakage": ["x"]})])["dialogue_fluency"]  # not a fluency rule
    assert not caps(good + [reply(items={"silence_not_consent": -10.0})])["workflow_compliance"]
    assert not caps(good + [reply(items={"no_repeated_confirmation": -9.0})])["workflow_compliance"]
    assert not caps(good + [reply(rules={"price_constraints": ["below_floor:x"]})])["domain_understanding"]
    assert not caps(good + [reply(rules={"internal_term_leakage": ["term:x"]})])["domain_understanding"]
    # negotiation: price pursuit AND movement
    assert not caps([reply(items={"price_pursuit": -3.0})])["negotiation_effectiveness"]  # never pursued
    assert not caps([reply(items={"price_pursuit": 9.0}), reply(items={"price_pursuit": -6.0}),
                     reply(items={"price_pursuit": -6.0})])["negotiation_effectiveness"]  # mean < 0
    no_move = capabilities(dialogue(responses=good, hotel=("Absolutely not.",)))
    assert not no_move["negotiation_effectiveness"]
    counter = capabilities(dialogue(responses=good, hotel=("¥950 is the best we can do for the Deluxe King.",)))
    assert counter["negotiation_effectiveness"]  # the hotel moved below its current ¥1000


def test_capability_shares_over_dialogues():
    good = reply(items={"price_pursuit": 9.0})
    m = metrics_of([dialogue("x", [good], agreed={"Deluxe King": 900.0}),
                    dialogue("y", [good, reply(rules={"overlength": ["x"]})]),
                    dialogue("z", [reply(rules={"hallucinated_numbers": ["unknown:3"]})])])
    assert m["capability.dialogue_fluency"].value == pytest.approx(2 / 3)
    assert m["capability.domain_understanding"].value == pytest.approx(2 / 3)
    assert m["capability.negotiation_effectiveness"].value == pytest.approx(1 / 3)
    assert m["capability.workflow_compliance"].value == 1.0


# ---------------------------------------------------------------------------- outcomes of the negotiation
def test_response_rate_counts_dialogues_where_the_hotel_said_anything():
    m = metrics_of([dialogue("x", [reply(), reply()], hotel=("", "")),
                    dialogue("y", [reply(), reply()], hotel=("", "ok"))])
    assert m["response_rate"].value == 0.5


def test_task_success_is_per_room_type_ticket_and_needs_a_price_below_current():
    d1 = dialogue("x", agreed={"Deluxe King": 900.0}, scenario=TWO_ROOMS)  # 1 of 2 tickets
    d2 = dialogue("y", agreed={"Deluxe King": 1000.0}, scenario=ONE_ROOM)  # at current: not a cut
    d3 = dialogue("z", agreed={}, scenario=TWO_ROOMS)  # 0 of 2
    assert [t.success for t in ticket_outcomes(d1)] == [True, False]
    m = metrics_of([d1, d2, d3])
    assert m["task_success"].value == pytest.approx(1 / 5)  # tickets, not the mean of per-dialogue rates
    assert m.units["task_success"]["x"] == (1.0, 2.0)


def test_price_vs_target_and_turns_to_a_deal_average_over_agreed_tickets():
    d1 = dialogue("x", agreed={"Deluxe King": 810.0, "Standard Twin": 540.0}, scenario=TWO_ROOMS,
                  deal_turns={"Deluxe King": 2, "Standard Twin": 4})
    d2 = dialogue("y", agreed={"Deluxe King": 990.0}, deal_turns={"Deluxe King": 6})
    d3 = dialogue("z", agreed={}, deal_turns={})
    m = metrics_of([d1, d2, d3])
    # (810-900)/900 = -0.1; (540-540)/540 = 0; (990-900)/900 = 0.1
    assert m["price_vs_target"].value == pytest.approx(0.0)
    assert m.units["price_vs_target"]["x"] == (pytest.approx(-0.1), 2.0)
    assert m["turns_to_deal"].value == pytest.approx(4.0)
    assert m["price_vs_target"].n == 2  # dialogues with an agreed ticket
    # unknown deal turns leave a dialogue out of turns-to-deal only
    m2 = metrics_of([dialogue("x", agreed={"Deluxe King": 900.0}, deal_turns=None)])
    assert m2["turns_to_deal"].value is None and m2["price_vs_target"].value == pytest.approx(0.0)


def test_guardrail_violations_are_per_100_replies_per_rule():
    d1 = dialogue("x", [reply(rules={"format_breakage": ["role_tag"]}), reply(), reply(), reply()])
    d2 = dialogue("y", [reply(rules={"format_breakage": ["x"], "overlength": ["y"]}), reply(), reply(), reply()])
    m = metrics_of([d1, d2])
    assert m["guardrail.format_breakage"].value == pytest.approx(25.0)
    assert m["guardrail.overlength"].value == pytest.approx(12.5)
    assert m["guardrail.cot_leakage"].value == 0.0
    assert m["judge_score"].value == pytest.approx(0.5)
    assert m.responses == 8 and m.dialogues == 2


def test_every_metric_is_computed():
    m = metrics_of([dialogue("x", agreed={"Deluxe King": 900.0}, deal_turns={"Deluxe King": 1})],
                   [case("overlong", "minor")])
    assert set(m.estimates) == set(METRICS)
    assert all(e.value is not None for e in m.estimates.values())


# ---------------------------------------------------------------------------- intervals
def test_bootstrap_interval_is_seeded_brackets_the_value_and_narrows_with_more_units():
    num, den = [1.0, 0.0] * 10, [1.0] * 20
    e = bootstrap_ratio(num, den, 2000, 0.95, seed=1)
    assert e.value == 0.5 and e.n == 20
    assert e.lo < 0.5 < e.hi and 0.25 <= e.lo and e.hi <= 0.75
    assert bootstrap_ratio(num, den, 2000, 0.95, seed=1) == e
    wide = bootstrap_ratio(num[:4], den[:4], 2000, 0.95, seed=1)
    assert (wide.hi - wide.lo) > (e.hi - e.lo)
    assert bootstrap_ratio([1.0] * 5, [1.0] * 5, 100, 0.9, seed=0) == type(e)(1.0, 1.0, 1.0, 5)
    assert bootstrap_ratio([0.0, 0.0], [0.0, 0.0], 100, 0.9, seed=0).value is None


def test_paired_gain_uses_common_units_and_is_exact_when_every_unit_moves_alike():
    a_units = {"u1": (1.0, 1.0), "u2": (1.0, 1.0), "u3": (0.0, 1.0), "only_a": (1.0, 1.0)}
    b_units = {"u1": (0.0, 1.0), "u2": (0.0, 1.0), "u3": (0.0, 1.0)}
    e = paired_difference(a_units, b_units, 500, 0.95, seed=0)
    assert e.value == pytest.approx(2 / 3) and e.n == 3
    same = paired_difference({"u1": (1.0, 1.0), "u2": (0.0, 1.0)}, {"u1": (0.5, 1.0), "u2": (-0.5, 1.0)}, 500, 0.95, 0)
    assert (same.value, same.lo, same.hi) == (pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5))
    better = metrics_of([dialogue("x", [reply(1.0)]), dialogue("y", [reply(1.0)])])
    worse = metrics_of([dialogue("x", [reply(0.0)]), dialogue("y", [reply(0.0)])])
    assert gain(better, worse, "rating", 200, 0.95).value == pytest.approx(2.0)  # 5 vs 3


def test_repeated_ids_are_rejected():
    with pytest.raises(ValueError, match="dialogue ids repeat"):
        metrics_of([dialogue("x"), dialogue("x")])


def test_generated_bad_responses_are_unresolved_and_expert_chosen_replies_fix_them(data_dir):
    """On the generated data: every weak reply still carries its defect; the expert's chosen
    reply to the same context removes it (a check that judge and rules catch every defect)."""
    from repo_ray.config import EvalJudgeConfig
    from repo_ray.domain.defects import DEFECTS
    from repo_ray.domain.schemas import load_rows
    from repo_ray.eval.eval_judge import EvalJudge, JudgeRequest
    from repo_ray.eval.harness import score_replies

    judge = EvalJudge(EvalJudgeConfig())
    cases = load_rows("bad_cases", data_dir).rows
    assert {c.defect for c in cases} == set(DEFECTS)
    found = score_replies(judge, [JudgeRequest(c.scenario, tuple(c.context), c.bad_response) for c in cases],
                          [0] * len(cases), 600)
    outcomes = {c.defect: bad_case_verdict(BadCaseRecord(c.case_id, c.defect, c.severity, f)).outcome
                for c, f in zip(cases, found, strict=True)}
    assert outcomes == {d: BadCaseOutcome.UNRESOLVED for d in DEFECTS}

    pairs = load_rows("preference", data_dir).rows[:48]
    chosen = score_replies(judge, [JudgeRequest(p.scenario, tuple(p.context), p.chosen) for p in pairs],
                           [0] * len(pairs), 600)
    fixed = [bad_case_verdict(BadCaseRecord(p.pair_id, p.defect, p.severity, f)).fixed
             for p, f in zip(pairs, chosen, strict=True)]
    assert sum(fixed) >= 0.95 * len(pairs)
