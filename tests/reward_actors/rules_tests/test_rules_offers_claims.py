"""Offers are not claims (DESIGN.md §7): `price_constraints` and `hallucinated_numbers` on a
hand-written table of tricky replies and on generated probes, English and Chinese.

The contexts are conftest.py's (Deluxe King: current ¥1000, competitors ¥880/¥920, target
¥900, floor ¥850; Standard Twin: ¥600, ¥520/¥560, ¥540, ¥500; 4 stars; 2027-03-01 to
2027-03-03, two nights; the hotel last said ¥950 for the Deluxe King), and the same with an
agent turn that invented a competitor price (¥870) which the hotel did not echo.
"""

from __future__ import annotations

import random

import pytest

from repo_ray.domain.agent import agent_line
from repo_ray.domain.datagen import generate_scenario, play_expert_dialogue
from repo_ray.domain.scenario import Scenario, format_price
from repo_ray.types import Message, Role
from reward_actors.rules import RuleContext
from reward_actors.rules.numbers import asked_prices, hallucinated_numbers, price_constraints

from .conftest import HISTORY, scenario

INVENTED = {
    "en": [(Role.AGENT, "Competitors nearby sell the Deluxe King at ¥870, well below yours."), (Role.HOTEL, "Hmm.")],
    "zh": [(Role.AGENT, "周边竞品豪华大床房才¥870，比您低不少。"), (Role.HOTEL, "嗯。")],
}


def _context(language: str, invented: bool) -> RuleContext:
    turns = HISTORY[language] + (INVENTED[language] if invented else [])
    return RuleContext.from_scenario(scenario(language), [Message(r, t) for r, t in turns])


CONTEXTS = {(lang, inv): _context(lang, inv) for lang in ("en", "zh") for inv in (False, True)}

H, P = "hallucinated_numbers", "price_constraints"
# (rule, language, context has the invented ¥870 turn, reply, fires)
CASES: list[tuple[str, str, bool, str, bool]] = [
    # a counter-offer inside [floor, current) is an offer, not an invented number
    (H, "en", False, "I understand. Could you meet us at ¥870 for the Deluxe King?", False),
    (P, "en", False, "I understand. Could you meet us at ¥870 for the Deluxe King?", False),
    (H, "zh", False, "理解您。豪华大床房能否按¥870？", False),
    (H, "en", False, "Could you lower your current price to ¥910 for the Deluxe King?", False),
    # a correct percentage between scenario prices, and a wrong one
    (H, "en", False, "Similar hotels nearby are about 9% below today's ¥1000.", False),  # 920 vs 1000: 8.7%
    (H, "en", False, "Similar hotels nearby are about 25% below today's price.", True),
    (H, "zh", False, "周边同类酒店比您现在的价格低约9%。", False),
    (H, "zh", False, "周边同类酒店比您现在的价格低约25%。", True),
    (H, "en", False, "Could you adjust the Deluxe King to ¥900? That is 10% below today.", False),
    (H, "en", False, "Could you adjust the Deluxe King to ¥900? That is 20% below today.", True),
    (H, "en", False, "Could you set the Standard Twin to ¥530? That is about 12% below today.", False),  # 530 vs 600
    (H, "zh", False, "标准双床房能否调整到¥530？比现价低约12%。", False),
    (H, "zh", False, "标准双床房能否调整到¥530？比现价低约30%。", True),
    # durations, stay nights, star rating, room-type counts follow from the scenario or are time frames
    (H, "en", False, "Once you confirm, the new price goes live within 24 hours.", False),
    (H, "zh", False, "您确认后，新价格会在24小时内生效。", False),
    (H, "en", False, "I'll follow up in 2 days, no decision needed today.", False),
    (H, "en", False, "Could I call you back at 5pm, or at 10:30 tomorrow?", False),
    (H, "zh", False, "我明天下午5点前再联系您。", False),
    (H, "en", False, "For your 2-night stay, could you adjust the Deluxe King to ¥900?", False),
    (H, "en", False, "For your 3-night stay, could you adjust the Deluxe King to ¥900?", True),
    (H, "zh", False, "您这次住2晚，能否把豪华大床房调整到¥900？", False),
    (H, "en", False, "As a 4-star hotel, you deserve more guests.", False),
    (H, "zh", False, "作为4星酒店，您值得更多客人。", False),
    (H, "zh", False, "作为5星酒店，您值得更多客人。", True),
    (H, "en", False, "Let's look at your 2 room types.", False),
    (H, "en", False, "Let's look at your 3 room types.", True),
    (H, "zh", False, "您的2个房型我们都看了。", False),
    # "¥79 off" is a discount: checked by the price it implies (¥921, inside [850, 1000))
    (P, "en", False, "Could you take about ¥79 off the Deluxe King?", False),
    (H, "en", False, "Could you take about ¥79 off the Deluxe King?", False),
    (P, "zh", False, "豪华大床房能否优惠¥79左右？", False),
    (H, "zh", False, "豪华大床房能否优惠¥79左右？", False),
    (P, "en", False, "Could you take ¥200 off the Deluxe King?", True),  # implies ¥800 < floor ¥850
    (P, "zh", False, "豪华大床房能否再降¥200？", True),
    (P, "en", False, "Could you give us 10% off the Deluxe King?", False),
    (P, "en", False, "Could you give us 30% off the Deluxe King?", True),
    (P, "zh", False, "豪华大床房能否打9折？", False),
    (P, "zh", False, "豪华大床房能否打7折？", True),
    # a competitor price is a claim: true, invented, and invented then repeated (own turns are no evidence)
    (H, "en", False, "Competitors sell the Deluxe King at ¥880.", False),
    (H, "zh", False, "周边竞品豪华大床房是¥880。", False),
    (H, "en", False, "Competitors nearby sell the Deluxe King at ¥870.", True),
    (H, "en", True, "As I mentioned, competitors nearby sell the Deluxe King at ¥870; could you match it?", True),
    (H, "zh", True, "我之前提到，周边竞品豪华大床房才¥870，您看能否参考一下？", True),
    (H, "en", True, "Could you meet us at ¥880 for the Deluxe King, in line with competitors?", False),
    # a current-price claim
    (H, "en", False, "Your Deluxe King is currently ¥1000; could you adjust it to ¥900?", False),
    (H, "en", False, "Yours is ¥1100 now.", True),
    (H, "zh", False, "您的豪华大床房现在是¥1100。", True),
    # the hotel's words are evidence
    (H, "en", False, "You offered ¥950 for the Deluxe King; could we meet at ¥920?", False),
    (H, "zh", False, "您刚才说豪华大床房¥950，能否按¥920？", False),
    (H, "en", False, "Thanks, ¥950 is a step; could we meet at ¥920 for the Deluxe King?", False),
    (H, "en", False, "You offered ¥960 for the Deluxe King; could we meet at ¥920?", True),
    # differences between scenario prices
    (H, "en", False, "Competitors are ¥80 cheaper than you on the Deluxe King.", False),  # 1000 - 920
    (H, "zh", False, "竞品豪华大床房比您便宜¥120。", False),  # 1000 - 880
    (H, "en", False, "Competitors are ¥150 cheaper than you on the Deluxe King.", True),
    (H, "zh", False, "竞品豪华大床房比您便宜¥300。", True),
]


@pytest.mark.parametrize(
    "rule, lang, invented, reply, fires",
    [pytest.param(*c, id=f"{c[0]}-{'fires' if c[4] else 'clean'}-{c[1]}-{i}") for i, c in enumerate(CASES)],
)
def test_offers_and_claims_table(rule, lang, invented, reply, fires):
    fn = {H: hallucinated_numbers, P: price_constraints}[rule]
    res = fn(reply, CONTEXTS[(lang, invented)])
    assert res.fired == fires, f"{rule} on {reply!r}: {res.tags}"


def test_the_table_covers_both_rules_both_ways_in_both_languages():
    for rule in (H, P):
        for lang in ("en", "zh"):
            kinds = {fires for r, la, _, _, fires in CASES if r == rule and la == lang}
            assert kinds == {True, False}, (rule, lang)


def test_a_discount_is_asked_as_the_price_it_implies():
    ctx = CONTEXTS[("en", False)]
    (ask,) = asked_prices("Could you take about ¥79 off the Deluxe King?", ctx)
    assert (ask.room, ask.price, ask.discount) == ("Deluxe King", 921.0, "¥79 off")
    assert price_constraints("Could you take ¥200 off the Deluxe King?", ctx).tags == (
        "below_floor:Deluxe King:800<850:¥200 off",)


def test_the_agents_own_turns_are_no_evidence_but_the_hotels_are():
    reply = "Competitors nearby sell the Deluxe King at ¥870."
    assert hallucinated_numbers(reply, CONTEXTS[("en", True)]).tags == ("price_competitor:870",)
    echoed = RuleContext.from_scenario(scenario("en"), [
        Message(Role.AGENT, reply), Message(Role.HOTEL, "Really? ¥870 at the place next door?")])
    assert not hallucinated_numbers(reply, echoed).fired
    assert 870.0 not in CONTEXTS[("en", True)].known_numbers


# ---------------------------------------------------------------------------- generated probes
def _public_prices(sc: Scenario, ctx: RuleContext) -> set[float]:
    return {p for r in sc.room_types for p in (r.current_price, r.target_price, *r.competitor_prices)} | set(
        ctx.hotel_numbers)


def _derived_percents(sc: Scenario, ctx: RuleContext) -> list[float]:
    """Percentages between two prices of one room: its own, or a figure the hotel said that
    could be a price of it (within [0.7 x floor, 1.2 x current])."""
    out = []
    for r in sc.room_types:
        hotel = {h for h in ctx.hotel_numbers if 0.7 * r.floor_price <= h <= 1.2 * r.current_price}
        ps = sorted({r.current_price, r.target_price, r.floor_price, *r.competitor_prices, *hotel})
        out += [100 * abs(a - b) / d for a in ps for b in ps if a != b for d in (a, b)]
    return out


def _probes(n_dialogues: int, seed: int) -> list[tuple[str, str, RuleContext, str, str]]:
    """(probe kind, language, context, reply, rule that must fire or "" for none)."""
    out = []
    for i in range(n_dialogues):
        rng = random.Random(f"probe:{seed}:{i}")
        sc = generate_scenario(rng, f"probe-{i:04d}", zh_fraction=0.5, max_room_types=3)
        d = play_expert_dialogue(sc, seed)
        point = rng.choice(d.points[1:] or d.points)
        history = point.history
        ctx = RuleContext.from_scenario(sc, history)
        zh = sc.language == "zh"
        r = rng.choice(sc.room_types)
        public = _public_prices(sc, ctx)

        def invented(r=r, rng=rng, public=public, sc=sc) -> float:
            """A price no competitor, current price or hotel turn holds."""
            avg = round(sum(r.competitor_prices) / len(r.competitor_prices))
            while True:
                f = float(round(r.current_price * rng.uniform(0.75, 1.1) / 10) * 10)
                if f not in public and f != avg and f not in sc.allowed_numbers():
                    return f

        # clean: a counter-offer inside [floor, current), in the expert's own words
        offer = float(rng.randrange(int(r.floor_price), int(r.current_price), 10))
        out.append(("counter_offer", sc.language, ctx,
                    agent_line(sc.language, "concede", rng.choice(["short", "long"]), rng, room=r.name,
                               price=format_price(offer)), ""))
        # clean: a discount whose implied price is inside [floor, current)
        x = int(r.current_price - offer) or 10
        out.append(("discount_ok", sc.language, ctx,
                    f"{r.name}能否优惠¥{x}左右？" if zh else f"Could you take about ¥{x} off the {r.name}?", ""))
        # dirty: a discount that implies a price below the floor
        low = r.floor_price * rng.uniform(0.6, 0.9)
        xb = int(r.current_price - low)
        out.append(("discount_below_floor", sc.language, ctx,
                    f"{r.name}能否再降¥{xb}？" if zh else f"Could you take ¥{xb} off the {r.name}?",
                    "price_constraints"))
        # clean: a correct percentage between the current price and a competitor's
        c = rng.choice(r.competitor_prices)
        pct = round(100 * (r.current_price - c) / r.current_price)
        out.append(("percent_ok", sc.language, ctx,
                    f"周边同类酒店的{r.name}比您现在的价格低约{pct}%。" if zh
                    else f"Similar hotels nearby are about {pct}% below your current price for the {r.name}.", ""))
        # dirty: a percentage no two public prices give
        derived = _derived_percents(sc, ctx)
        wrong = next(n for n in (rng.randint(15, 95) for _ in range(1000)) if all(abs(n - d) >= 2 for d in derived))
        out.append(("percent_wrong", sc.language, ctx,
                    f"周边同类酒店的{r.name}比您现在的价格低约{wrong}%。" if zh
                    else f"Similar hotels nearby are about {wrong}% below your current price for the {r.name}.",
                    "hallucinated_numbers"))
        # clean: a true difference to a competitor; dirty: one no two prices of the room give
        out.append(("difference_ok", sc.language, ctx,
                    f"周边同类酒店的{r.name}比您便宜¥{int(r.current_price - c)}。" if zh
                    else f"Similar hotels nearby are ¥{int(r.current_price - c)} cheaper than you on the {r.name}.",
                    ""))
        pool = {r.current_price, r.target_price, r.floor_price, *r.competitor_prices,
                *(h for h in ctx.hotel_numbers if 0.7 * r.floor_price <= h <= 1.2 * r.current_price)}
        gaps = [abs(a - b) for a in pool for b in pool]
        bad_gap = next(g for g in (rng.randint(15, 400) for _ in range(1000))
                       if g % 5 and all(abs(g - x) >= 6 for x in gaps))
        out.append(("difference_wrong", sc.language, ctx,
                    f"周边同类酒店的{r.name}比您便宜¥{bad_gap}。" if zh
                    else f"Similar hotels nearby are ¥{bad_gap} cheaper than you on the {r.name}.",
                    "hallucinated_numbers"))
        # clean: a true competitor price; dirty: an invented one, and the same repeated a turn later
        out.append(("competitor_true", sc.language, ctx,
                    f"周边同类酒店的{r.name}在{format_price(c)}。" if zh
                    else f"Similar hotels nearby sell the {r.name} at {format_price(c)}.", ""))
        f = invented()
        claim = (f"周边同类酒店的{r.name}在{format_price(f)}。" if zh
                 else f"Similar hotels nearby sell the {r.name} at {format_price(f)}.")
        out.append(("competitor_invented", sc.language, ctx, claim, "hallucinated_numbers"))
        later = RuleContext.from_scenario(sc, [*history, Message(Role.AGENT, claim),
                                               Message(Role.HOTEL, "嗯。" if zh else "Hmm.")])
        out.append(("competitor_repeated", sc.language, later,
                    f"我之前提到，周边同类酒店的{r.name}在{format_price(f)}，您看能否参考一下？" if zh
                    else f"As I mentioned, similar hotels nearby sell the {r.name} at {format_price(f)}; "
                         f"could you match it?", "hallucinated_numbers"))
        # dirty: a wrong current price
        wrong_now = invented()
        out.append(("current_wrong", sc.language, ctx,
                    f"您的{r.name}现在是{format_price(wrong_now)}。" if zh
                    else f"Your {r.name} is currently {format_price(wrong_now)}.", "hallucinated_numbers"))
        # clean: the hotel's own figure repeated, with a counter inside the range
        hotel_offers = [(name, p) for m in (point.last,) if m is not None for name, p in m.offered.items()]
        if hotel_offers:
            name, p = hotel_offers[0]
            room = sc.room(name)
            mid = float(max(room.floor_price, round((room.target_price + p) / 20) * 10))
            out.append(("hotel_quote", sc.language, ctx,
                        f"您刚才说{name}{format_price(p)}，能否按{format_price(mid)}？" if zh
                        else f"You offered {format_price(p)} for the {name}; could we meet at {format_price(mid)}?",
                        ""))
        # clean: a time frame
        out.append(("duration", sc.language, ctx,
                    "您在后台确认后，新价格会在24小时内生效。" if zh
                    else "Once you confirm in the portal, the new price goes live within 24 hours.", ""))
    return out


@pytest.fixture(scope="module")
def probes():
    return _probes(240, seed=3)


def test_generated_probes_cover_both_languages(probes):
    kinds = {(k, lang) for k, lang, *_ in probes}
    assert {lang for _, lang in kinds} == {"en", "zh"}
    assert sum(k == "hotel_quote" for k, *_ in probes) >= 20


def test_generated_defective_probes_are_caught(probes):
    by_kind: dict[str, list[bool]] = {}
    for kind, _, ctx, reply, rule in probes:
        if rule:
            fn = {"price_constraints": price_constraints, "hallucinated_numbers": hallucinated_numbers}[rule]
            by_kind.setdefault(kind, []).append(fn(reply, ctx).fired)
    assert set(by_kind) == {"discount_below_floor", "percent_wrong", "difference_wrong", "competitor_invented",
                            "competitor_repeated", "current_wrong"}
    for kind, hits in by_kind.items():
        assert sum(hits) / len(hits) >= 0.9, f"{kind}: caught {sum(hits)}/{len(hits)}"


def test_generated_legitimate_probes_are_not_flagged(probes):
    clean = [(kind, ctx, reply) for kind, _, ctx, reply, rule in probes if not rule]
    flagged = [(kind, reply, hallucinated_numbers(reply, ctx).tags + price_constraints(reply, ctx).tags)
               for kind, ctx, reply in clean
               if hallucinated_numbers(reply, ctx).fired or price_constraints(reply, ctx).fired]
    assert len(flagged) / len(clean) <= 0.01, flagged[:5]
    for kind in {k for k, *_ in clean}:
        n = sum(k == kind for k, *_ in clean)
        assert sum(k == kind for k, *_ in flagged) / n <= 0.02, [f for f in flagged if f[0] == kind][:3]
