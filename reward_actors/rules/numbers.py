"""Rules on the numbers of a reply: asked prices inside [floor, current] of their room type,
and no number that the scenario, the dialogue so far or the allowed list does not hold.
Pure functions of (reply, RuleContext); score convention in base.py.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from reward_actors.rules.base import (
    CLEAN,
    NUMBER,
    RuleContext,
    RuleResult,
    lowered,
    parse_number,
    register_rule,
    violations,
    word_starts,
)
from repo_ray.domain.scenario import RoomType

_DIGIT = re.compile(r"\d")
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2}|\d{1,2}月\d{1,2}[日号]|\d{4}年")
_CURRENCY_BEFORE = re.compile(r"(?:[¥￥]|\bcny|\brmb)\s?$")
_CURRENCY_AFTER = re.compile(r"\s?(?:元|块|(?:yuan|cny|rmb)\b)")
# A plain number followed by these is a share or a count, not a price.
_NOT_A_PRICE_AFTER = re.compile(
    r"\s?(?:%|％|percent|per cent|折|星|晚|间|个|位|天|次|家|倍|单|人"
    r"|(?:more |extra |new )?(?:stars?|nights?|days?|rooms?|bookings?|guests?|orders?|hotels?|people|times|reviews?)\b"
    r"|more\b|x\b)"
)
# Ask segments end at sentence ends and at semicolons: "competitors are at ¥800; could you..."
_SEGMENT_END = re.compile(r"[.!?;](?:\s+|$)|[。！？；]|\n")

# Cues that the agent asks for (or agrees to) a price in the segment (lower-case literals,
# see base.py on speed).
ASK_CUE = re.compile(
    r"could you\b|can you\b|would you\b|will you\b|could we\b|can we\b|would we\b|adjust|set\b|lower|reduc|cut\b"
    r"|drop\b|bring\b|meet us\b|meet me\b|match\b|how about\b|what about\b|go to\b|go down to\b|go on\b"
    r"|go a bit lower\b|suggest|propos|recommend|ask for\b|asking for\b|let's\b|lets\b|settle\b|agree|works for\b"
    r"|work for\b|works perfectly for\b|works well for\b|it is\b|deal\b|accept|i'll set\b|i'll update\b|i'll put\b"
    r"|i'll change\b|i'll list\b|update|change|consider|we'd like\b|we would like\b|request|move\b|fine with\b"
    r"|go with\b|happy with\b"
    r"|能否|可否|能不能|可不可以|可以吗|行吗|好吗|调整|调到|调为|降到|降至|降低|改为|改成|设为|设置|定在|定为|做到|给到"
    r"|按|建议|希望|没问题|完全可以|就这么定|成交|更新|请求|折中"
)
# Cues that the price after them is a fact being quoted, not an ask: the current price,
# competitors, the market, the hotel's own words.
FACT_CUE = re.compile(
    r"yours is\b|you're at\b|you are at\b|you're currently\b|you are currently\b|you're now\b|you are now\b"
    r"|you're selling\b|you are selling\b|currently\b|right now\b|now at\b|now is\b|now sell|competitor"
    r"|nearby\b|similar hotels\b|market\b|other hotels\b|others are\b|others sell|others charge|other is\b"
    r"|you said\b|you offered\b|you mentioned\b|you quoted\b|you proposed\b|your current\b|your offer"
    r"|your counter|used to\b|last year\b|last month\b|last week\b|average\b"
    r"|现在是|现在|目前|现价|当前|竞品|周边|同类|市场|其他酒店|别家|您刚才|您说的|您提出|原价|之前"
)
_FOR_ROOM = re.compile(r"\s*(?:for|on) (?:the |your )?")


@dataclass(frozen=True, slots=True)
class AskedPrice:
    room: str
    price: float


def _price_numbers(low: str, ctx: RuleContext) -> list[tuple[int, int, float]]:
    """(start, end, value) of the prices in the (date-blanked, lower-cased) reply: the
    currency-marked numbers when the reply marks its prices (like the hotel simulator), else
    plain numbers that could be a price of one of the rooms and are not a share or a count."""
    marked, plain = [], []
    for m in NUMBER.finditer(low):
        s, e = m.span()
        value = parse_number(m.group(0))
        if _CURRENCY_BEFORE.search(low, max(0, s - 5), s) or _CURRENCY_AFTER.match(low, e):
            marked.append((s, e, value))
        elif not marked and not _NOT_A_PRICE_AFTER.match(low, e):
            plain.append((s, e, value))
    if marked:
        return marked
    lo = min(0.3 * r.floor_price for r in ctx.room_types)
    hi = max(2.0 * r.current_price for r in ctx.room_types)
    return [p for p in plain if lo <= p[2] <= hi]


def _room_for(low: str, seg: tuple[int, int], start: int, end: int,
              mentions: list[tuple[int, int, str]], price: float, ctx: RuleContext) -> RoomType:
    """The room a price belongs to: "¥900 for the X", else the room named last before it in its
    segment, else first after it in the segment, else last before it in the reply, else the
    only room, else the room whose target is closest (as the simulator reads it)."""
    if not mentions:
        if len(ctx.room_types) == 1:
            return ctx.room_types[0]
        return min(ctx.room_types, key=lambda r: abs(r.target_price - price))
    after = _FOR_ROOM.match(low, end)
    if after:
        for s, _, name in mentions:
            if s == after.end():
                return ctx.room_by_lower[name]
    seg_start, seg_end = seg
    in_seg_before = [name for s, e, name in mentions if seg_start <= s and e <= start]
    if in_seg_before:
        return ctx.room_by_lower[in_seg_before[-1]]
    in_seg_after = [name for s, _, name in mentions if end <= s < seg_end]
    if in_seg_after:
        return ctx.room_by_lower[in_seg_after[0]]
    before = [name for _, e, name in mentions if e <= start]
    if before:
        return ctx.room_by_lower[before[-1]]
    if len(ctx.room_types) == 1:
        return ctx.room_types[0]
    return min(ctx.room_types, key=lambda r: abs(r.target_price - price))


def asked_prices(response: str, ctx: RuleContext) -> list[AskedPrice]:
    """The prices the reply asks for (or agrees to), each with its room type.

    A segment (sentence or semicolon clause) asks only if it holds an ask cue (could you,
    adjust, meet us at, works for us, 能否, 调整到, 按, ...); inside it, a price whose nearest
    cue before it is a fact cue (yours is, competitors, currently, 现在是, 竞品, ...) is quoted
    evidence, not an ask. Dates are never prices."""
    low = lowered(response)
    if not ctx.room_types or not _DIGIT.search(low):
        return []
    low = _DATE.sub(lambda m: " " * len(m.group(0)), low)  # positions kept, date digits gone
    prices = _price_numbers(low, ctx)
    if not prices:
        return []
    ends = [m.end() for m in _SEGMENT_END.finditer(low)]
    mentions = [(m.start(), m.end(), m.group(0)) for m in ctx.room_pattern.finditer(low)] if ctx.room_pattern else []
    out: list[AskedPrice] = []
    cues_by_seg: dict[int, list[tuple[int, bool]] | None] = {}
    for s, e, value in prices:
        k = bisect.bisect_right(ends, s)
        seg = (ends[k - 1] if k else 0, ends[k] if k < len(ends) else len(low))
        if k not in cues_by_seg:
            text = low[seg[0]:seg[1]]
            asks = word_starts(ASK_CUE, text)
            facts = word_starts(FACT_CUE, text) if asks else []
            cues_by_seg[k] = sorted([(m.start() + seg[0], True) for m in asks]
                                    + [(m.start() + seg[0], False) for m in facts]) if asks else None
        cues = cues_by_seg[k]
        if cues is None:
            continue  # no ask in this segment
        preceding = [is_ask for c, is_ask in cues if c < s]
        if preceding and not preceding[-1]:
            continue  # quoted as a fact
        room = _room_for(low, seg, s, e, mentions, value, ctx)
        out.append(AskedPrice(room.name, value))
    return out


@register_rule("price_constraints")
def price_constraints(response: str, ctx: RuleContext) -> RuleResult:
    """An asked price outside [floor, current] of its room type (see `asked_prices`):
    below the net-price floor, or above what the hotel charges now."""
    tags = []
    for ask in asked_prices(response, ctx):
        r = ctx.room(ask.room)
        if ask.price < r.floor_price:
            tags.append(f"below_floor:{ask.room}:{ask.price:g}<{r.floor_price:g}")
        elif ask.price > r.current_price:
            tags.append(f"above_current:{ask.room}:{ask.price:g}>{r.current_price:g}")
    return violations(tags)


@register_rule("hallucinated_numbers")
def hallucinated_numbers(response: str, ctx: RuleContext) -> RuleResult:
    """A number that is not a scenario fact (prices, star rating, date parts), not in the
    dialogue so far and not in the allowed list: invented percentages, counts, prices. A date
    such as 2027-03-01 passes when its parts do. Numbers inside names (hotel, room) are skipped;
    numbers written in words or Chinese numerals are not read."""
    if not _DIGIT.search(response):
        return CLEAN
    text = ctx.digit_name_pattern.sub(" ", response) if ctx.digit_name_pattern is not None else response
    known = ctx.known_numbers
    unknown = dict.fromkeys(raw for raw in NUMBER.findall(text) if parse_number(raw) not in known)
    return violations([f"unknown:{raw}" for raw in unknown])
