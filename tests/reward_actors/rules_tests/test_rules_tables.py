"""Every RF rule against a table of replies that must fire it and replies that must not,
English and Chinese, in the hand-made contexts of conftest.py (its history: agent turns,
hotel turns and a system prompt the rules must not read)."""

import pytest

from reward_actors.rules import RULE_FUNCS

# rule -> [(language, reply, fires)]
TABLES: dict[str, list[tuple[str, str, bool]]] = {
    "format_breakage": [
        ("en", "Sure, ¥900 works for us.<|im_end|>", True),
        ("en", "[AGENT]: Could you adjust the Deluxe King to ¥900? [END]", True),
        ("zh", '```json\n{"reply": "好的，豪华大床房就按¥900。"}\n```', True),
        ("en", "Could you adjust the {room} to {price}?", True),
        ("en", "**Great news!** Could you adjust the Deluxe King to ¥900?", True),
        ("en", "Assistant: Could you adjust the Deluxe King to ¥900?", True),
        ("zh", "能否把豪华大床房调整到¥900（和竞品持平？", True),
        ("en", "Thanks!<br>Could you adjust the Deluxe King to ¥900?", True),
        ("en", "Could you adjust the Deluxe King to ¥900? It would really help your ranking.", False),
        ("en", "To confirm: the Deluxe King at ¥900, for 2027-03-01 – 2027-03-03.", False),
        ("en", "I understand (and appreciate) your point; could we talk about the Standard Twin?", False),
        ("zh", "周边同类酒店的价格是：豪华大床房在¥880、¥920；您现在是¥1000。", False),
        ("zh", "我们的数据（来自平台）显示，周边价格更低。", False),
        ("en", "Your hotel: great location, great reviews. Let's make the price match.", False),
    ],
    "mixed_language": [
        ("en", "Could you adjust the Deluxe King to ¥900? 这个真的很划算。", True),
        ("en", "That works, 谢谢!", True),
        ("en", "我们的价格很有竞争力", True),
        ("zh", "能否把豪华大床房调整到¥900？This is a really good deal for you.", True),
        ("zh", "好的，trust me on this one。", True),
        ("zh", "Could you adjust 豪华大床房 to ¥900?", True),
        ("en", "Could you adjust the Deluxe King to ¥900?", False),
        ("en", "That is ¥900, or 900元 as you write it.", False),
        ("zh", "我们是OTA平台，能否把豪华大床房调整到¥900？", False),
        ("zh", "您可以在App里查看，WiFi和VIP权益不变，ok吗？", False),
        ("zh", "周边的Hilton Garden Inn卖¥880。", False),
        ("zh", "入住2027-03-01至2027-03-03，豪华大床房¥900。", False),
        ("zh", "<|im_start|>assistant好的，豪华大床房就按¥900。", False),  # debris is format_breakage's
    ],
    "cot_leakage": [
        ("en", "<think>The hotel sounds hesitant.</think> Could you adjust the Deluxe King to ¥900?", True),
        ("en", "Let me think step by step: first evidence, then push the price.", True),
        ("en", "My plan is to anchor on ¥900 first. Could you adjust the Deluxe King?", True),
        ("en", "Plan: ask for ¥900\nCould you adjust the Deluxe King to ¥900?", True),
        ("en", "I should anchor high here. Could you adjust the Deluxe King to ¥900?", True),
        ("zh", "让我一步步思考：先给依据，再压价。", True),
        ("zh", "<think>酒店有点犹豫，我应该先锚定价格。</think>能否把豪华大床房调整到¥900？", True),
        ("zh", "我的计划是先给依据。能否把豪华大床房调整到¥900？", True),
        ("en", "I think it's a fair level that keeps your margin and brings in more guests.", False),
        ("en", "Let me know if anything is off.", False),
        ("en", "Thanks for thinking it over; whenever you have a minute, I'd be glad to hear your thoughts.", False),
        ("en", "I'd like to share some market data and a plan for the season.", False),
        ("zh", "我觉得这个价格既保住利润，又能带来更多客人。", False),
        ("zh", "我们计划下个月推出新活动，您有兴趣吗？", False),
    ],
    "internal_term_leakage": [
        ("en", "Honestly, our internal target price for the Deluxe King is ¥900.", True),
        ("en", "The floor price is ¥850, so I can't go lower.", True),
        ("en", "The work order says I must get a cut.", True),
        ("en", "Our goal for the Deluxe King is ¥900.", True),
        ("en", "The lowest we can accept is ¥850 for the Deluxe King.", True),
        ("zh", "说实话，我们豪华大床房的底价是¥850。", True),
        ("zh", "工单要求我们压价。", True),
        ("zh", "豪华大床房最低只能到¥850。", True),
        ("zh", "我们的目标价是¥900。", True),
        ("en", "Could you adjust the Deluxe King to ¥900?", False),
        ("en", "Our goal is to bring you more guests.", False),
        ("en", "The minimum stay is 2 nights during the festival.", False),
        ("en", "We can work together on the Standard Twin too.", False),
        ("zh", "能否把豪华大床房调整到¥900？", False),
        ("zh", "我们的目标是帮您提升排名。", False),
        ("zh", "周边最低价是¥880。", False),
    ],
    "forbidden_words": [
        ("en", "I guarantee your bookings will double.", True),
        ("en", "You will definitely be ranked first.", True),
        ("en", "It's 100% safe to lower the price.", True),
        ("en", "I promise you'll see more guests.", True),
        ("en", "For sure, this will work.", True),
        ("zh", "我保证您的订单一定翻倍。", True),
        ("zh", "百分之百保证您排名第一。", True),
        ("zh", "这样一定会提升排名。", True),
        ("zh", "我们承诺带来更多订单。", True),
        ("en", "I can't guarantee results, but similar hotels saw more bookings.", False),
        ("en", "There's no guarantee, of course; it's your call.", False),
        ("en", "That's a promising market, and I think we can find a compromise.", False),
        ("en", "I understand you must be busy.", False),
        ("zh", "理解您一定很忙。", False),
        ("zh", "不一定马上见效，但排名会更有竞争力。", False),
        ("zh", "保证金不变，您的房型有一定的优势。", False),
    ],
    "repeated_phrasing": [
        ("en", "Hi, this is Alex from the travel platform, calling about Lakeside Hotel's room prices. Thanks!", True),
        ("en", "hi this is alex from the travel platform calling about lakeside hotel's room prices", True),
        ("en", "Guests compare these side by side. Could you meet us at ¥920 for the Deluxe King?", True),
        ("en", "Hi, this is Alex from the travel platform calling about Lakeside Hotel room prices again.", True),
        ("en", "It would really help your ranking. Thank you for listening.", True),
        ("en", "Could you meet us at ¥920 for the Deluxe King? Could you meet us at ¥920 for the Deluxe King?", True),
        ("en", "Could you adjust the Deluxe King to ¥900? And could you set the Standard Twin to ¥540?", True),
        ("zh", "您好，我是旅行平台的小李，想和您聊聊湖畔酒店的房价。", True),
        ("zh", "客人会放在一起比较，价差在影响您的点击。能否按¥920？", True),
        ("en", "I understand your concern. Could you adjust the Deluxe King to ¥900?", False),  # holding the line once
        ("en", "Could you meet us at ¥920 for the Deluxe King?", False),
        ("en", "Similar hotels nearby sell the Standard Twin at ¥520 and ¥560 while yours is ¥600.", False),
        ("en", "We could do ¥950 for the Deluxe King.", False),  # the hotel's words, not the agent's
        ("en", "Hello again. Thanks.", False),
        ("zh", "理解您的顾虑。能否把豪华大床房调整到¥920？", False),
        ("zh", "能否把豪华大床房调整到¥900？", False),
    ],
    "overlength": [
        ("en", "Thank you for your time. " * 25, True),  # 625 chars > 600
        ("en", "Thank you for your time. " * 60, True),
        ("zh", "感谢您的时间。" * 35, True),  # 245 chars > 240 (600 x 0.4)
        ("zh", "感谢您的时间。" * 80, True),
        ("en", "x" * 601, True),
        ("en", "x" * 600, False),
        ("en", "Thank you for your time. " * 12, False),
        ("zh", "感" * 240, False),
        ("zh", "感谢您的时间。" * 20, False),
        ("en", "Could you adjust the Deluxe King to ¥900?", False),
    ],
    "price_constraints": [
        ("en", "Could you adjust the Deluxe King to ¥800?", True),  # below floor 850
        ("en", "Could you adjust the Standard Twin to ¥650?", True),  # above current 600
        ("en", "Could you meet us at ¥480 for the Standard Twin?", True),
        ("en", "How about 700 for the Deluxe King?", True),  # plain number when the reply marks no price
        ("en", "Great, ¥1050 for the Deluxe King works for us.", True),
        ("en", "Competitors are at ¥880; could you go to ¥820 for the Deluxe King?", True),
        ("zh", "能否把豪华大床房调整到¥800？", True),
        ("zh", "标准双床房能否按¥480？", True),
        ("zh", "好的，标准双床房就按¥650。", True),
        ("en", "Similar hotels nearby sell the Deluxe King at ¥800 and ¥820 while yours is ¥1000.", False),
        ("en", "Your Deluxe King is currently ¥1000; could you adjust it to ¥900?", False),
        ("en", "Could you adjust the Deluxe King to ¥900 and the Standard Twin to ¥540?", False),
        ("en", "To confirm: the Deluxe King at ¥900, for 2027-03-01 – 2027-03-03.", False),
        ("en", "Could you meet us at ¥850 for the Deluxe King?", False),  # the floor itself is allowed
        ("en", "Competitors sell the Standard Twin at ¥450, so could you adjust it to ¥540?", False),
        ("zh", "周边同类酒店的价格是：豪华大床房在¥800，您现在是¥1000。", False),
        ("zh", "能否把豪华大床房调整到¥900，标准双床房调整到¥540？", False),
    ],
    "hallucinated_numbers": [
        ("en", "Last month 30% of hotels in Hangzhou cut prices.", True),
        ("en", "You would get 685 more bookings.", True),
        ("en", "Competitors nearby sell the Deluxe King at ¥870.", True),  # no competitor charges that
        ("en", "Our 5-star partners nearby all did it.", True),
        ("en", "We have 24/7 support.", True),
        ("zh", "上个月杭州有58%的酒店降价后多了978个订单。", True),
        ("zh", "周边竞品豪华大床房才¥870。", True),
        ("en", "Could you adjust the Deluxe King to ¥870?", False),  # an offer inside [floor, current), no claim
        ("zh", "能否把豪华大床房调整到¥870？", False),
        ("en", "Could you meet us at ¥950 for the Deluxe King?", False),  # the hotel's own number
        ("en", "To confirm: the Deluxe King at ¥900, for 2027-03-01 – 2027-03-03.", False),
        ("en", "As a 4-star hotel, you deserve more guests.", False),
        ("en", "Similar hotels nearby sell the Standard Twin at ¥520 and ¥560 while yours is ¥600.", False),
        ("en", "Yours is ¥1,000 now.", False),
        ("zh", "入住2027-03-01至2027-03-03，豪华大床房¥900。", False),
        ("zh", "好的，谢谢您！", False),
    ],
}


def _cases():
    for rule, rows in TABLES.items():
        for i, (lang, text, fires) in enumerate(rows):
            yield pytest.param(rule, lang, text, fires, id=f"{rule}-{'fires' if fires else 'clean'}-{lang}-{i}")


# Rules that read a flag of the context, not the reply's text: tested where the flag is made.
CONTEXT_FLAG_RULES = {"truncated"}


def test_every_rule_has_five_firing_and_five_clean_replies():
    assert set(TABLES) == set(RULE_FUNCS) - CONTEXT_FLAG_RULES
    for rule, rows in TABLES.items():
        assert sum(f for _, _, f in rows) >= 5, rule
        assert sum(not f for _, _, f in rows) >= 5, rule


@pytest.mark.parametrize("rule, lang, text, fires", list(_cases()))
def test_rule_fires_exactly_on_its_violations(rule, lang, text, fires, contexts):
    result = RULE_FUNCS[rule](text, contexts[lang])
    assert result.fired == fires, f"{rule} on {text!r}: score {result.score}, tags {result.tags}"
    assert -2.0 <= result.score <= 0.0
    assert bool(result.tags) == fires
