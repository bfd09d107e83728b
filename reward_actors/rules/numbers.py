"""Rules on the numbers of a reply (DESIGN.md §7, "an offer is not a claim"). Pure functions
of (reply, RuleContext); score convention in base.py.

`read_numbers` reads every number of a reply as one of:
- an **offer**: a price the agent proposes (an asked price, or a discount such as "¥79 off",
  "10% off", "打9折", which stands for the price it implies: current - X). Whether an offer
  lies in [floor, current] is `price_constraints`' business; a legitimate offer (inside
  [floor, current)) is never an invented number.
- a **claim**: a fact the agent states: a competitor price, the current price, what the
  hotel said, a percentage, a difference, a count. A claim must follow from the scenario
  or from what the hotel said. Hotel turns are evidence; the agent's own earlier turns are
  not, so an invention stays an invention when repeated (only the agent's earlier
  legitimate offers may be restated). Derived numbers follow from the scenario and pass: a
  difference or percentage between public prices (current, competitors, the hotel's
  figures, the agent's offers) within rounding, the stay's dates and nights, the star
  rating, the number of room types or of competitors, the competitors' average, and
  durations up to a plausible bound ("within 24 hours", "in 2 days") and times of day
  ("at 5pm", "10:30", "5点前"). Numbers in words or Chinese numerals are not read.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from repo_ray.domain.scenario import RoomType
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

_DIGIT = re.compile(r"\d")
_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2}|\d{1,2}月\d{1,2}[日号]|\d{4}年")
_CLOCK = re.compile(r"(?<![\d.:])(?:[01]?\d|2[0-4])[:：][0-5]\d(?![\d:])")  # 10:30, a time of day
_CURRENCY_BEFORE = re.compile(r"(?:[¥￥]|\bcny|\brmb)\s?$")
_CURRENCY_AFTER = re.compile(r"\s?(?:元|块|(?:yuan|cny|rmb)\b)")
# What follows a number that is not a price: a share, a duration, nights, stars, a count.
# One named group per kind (order matters: 星期 is a week, not a star).
_UNIT = re.compile(
    r"\s?(?:(?P<percent>%|％|percent\b|per cent\b)|(?P<zhe>折)|(?P<clock>[ap]\.?m\b\.?|点(?:前|之前|以前|后|半)?)"
    r"|(?P<minutes>-?minutes?\b|-?mins?\b|分钟)|(?P<hours>-?hours?\b|-?hrs?\b|h\b|个?小时)"
    r"|(?P<days>-?(?:business |working )?days?\b|个?工作日|天)|(?P<weeks>-?weeks?\b|个?星期|周)"
    r"|(?P<months>-?months?\b|个月)|(?P<nights>-?nights?\b|晚|夜)|(?P<stars>-?stars?\b|星)"
    r"|(?P<rooms>(?:room types?|types of rooms?|room categories|rooms?)\b|[种个类]房型|房型|间房)"
    r"|(?P<hotels>(?:competitors?|hotels?|properties)\b|家)"
    r"|(?P<count>[个位次倍单人间]|(?:more |extra |new )?(?:bookings?|guests?|orders?|people|times|reviews?|clicks?"
    r"|views?|visitors?|customers?|partners?)\b|more\b|x\b))"
)
# The longest duration of each unit that is a time frame, not a statistic.
_DURATION_CAP = {"minutes": 120, "hours": 72, "days": 30, "weeks": 12, "months": 12, "clock": 24}
# "58% of hotels", "58%的酒店": a share of something, not a price relation.
_SHARE_AFTER = re.compile(r"\s?(?:of\b|的(?:酒店|客人|顾客|订单|用户|商家|同行|人|房))")
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
# Cues that a price after them is a fact being stated, by what kind of fact it is: a
# competitor's (or market) price, the hotel's current price, what the hotel said, or
# another fact (the past, which nothing in the context can confirm).
_FACT_KINDS = (
    ("competitor", r"competitor|nearby\b|similar hotels\b|similar properties\b|comparable hotels\b|other hotels\b"
                   r"|others are\b|others sell|others charge|other is\b|next door\b|down the street\b"
                   r"|across the street\b|market\b|average\b|rivals?\b"
                   r"|竞品|竞争对手|周边|同类|附近|市场|其他酒店|别家|同行|隔壁"),
    ("current", r"yours is\b|yours at\b|you're at\b|you are at\b|you're currently\b|you are currently\b|you're now\b"
                r"|you are now\b|you're selling\b|you are selling\b|currently\b|right now\b|now at\b|now is\b|now sell"
                r"|your current|today's\b|现在是|现在|目前|现价|当前|原价"),
    ("hotel", r"you said\b|you offered\b|you mentioned\b|you quoted\b|you proposed\b|you suggested\b|your offer"
              r"|your counter|您刚才|您说的|您说|您提出|您给的|您报的|您开的"),
    ("past", r"used to\b|last year\b|last month\b|last week\b|last season\b|previously\b|之前|以前|去年|上个月|上周"),
)
FACT_CUE = re.compile("|".join(pattern for _, pattern in _FACT_KINDS))
# Fact and ask cues in one plain alternation, scanned once per segment (named groups would cost
# the literal-prefix scan ~2.5x): the kind of a match is looked up afterwards.
_CUE = re.compile(f"{FACT_CUE.pattern}|{ASK_CUE.pattern}")
_FACT_KIND_PATTERNS = tuple((kind, re.compile(pattern)) for kind, pattern in _FACT_KINDS)


@functools.lru_cache(maxsize=1024)
def _cue_kind(cue: str) -> str:
    """competitor, current, hotel or past for a fact cue; offer for an ask cue."""
    return next((kind for kind, pattern in _FACT_KIND_PATTERNS if pattern.match(cue)), "offer")


# A price right after "to" / "到" in a segment that asks is the asked price, whatever fact
# cue came between ("could you lower your current price to ¥900").
_ASK_TARGET_BEFORE = re.compile(r"(?:\bto|\bdown to|到|至|为|成)\s?$")
_FOR_ROOM = re.compile(r"\s*(?:for|on) (?:the |your )?")

# Relative amounts: a discount ("¥79 off", "a reduction of ¥79", "降¥50", "优惠¥79") or a
# comparison ("¥80 cheaper", "9% below", "比竞品贵¥80", "低约9%"). Looked for right before
# the number (its currency sign excluded) and right after it (its unit included).
_HEDGE_EN = r"(?:about |around |roughly |approximately |just |only |nearly |almost |another |an extra |a further )?"
_HEDGE_ZH = r"了?(?:约|大约|大概|将近|近|整整|足足)?"
_REL_BEFORE = re.compile(
    rf"(?:(?P<d>(?:reduction|discount|cut|saving|savings|markdown|decrease|drop) of {_HEDGE_EN}"
    rf"|(?:by|save|saves|saving|another|extra) {_HEDGE_EN}|an extra |a further "
    rf"|(?<!最)(?:降价|降低|降|减少|减|优惠|让利|让|少|便宜){_HEDGE_ZH})"
    rf"|(?P<c>(?:difference|gap|spread) of {_HEDGE_EN}"
    rf"|(?<!最)(?:低了|低|高出|高了|高|贵了|贵|差价|相差|差了|差){_HEDGE_ZH}))"
    r"(?:[¥￥]\s?|cny\s?|rmb\s?)?(?=\d)"
)  # found once per reply (word-initial matches); a number starting where one ends is relative
_REL_AFTER = re.compile(
    r"\s?(?:左右\s?)?(?:(?P<d>off\b|discount\b|reduction\b)"
    r"|(?P<c>less\b|cheaper\b|lower\b|higher\b|more expensive\b|more than\b|more\b|above\b|below\b|apart\b"
    r"|difference\b|gap\b|(?:的)?(?:差价|差距|价差)))"
)


@dataclass(frozen=True, slots=True)
class AskedPrice:
    room: str
    price: float
    discount: str = ""  # the discount it was read from ("¥79 off"), empty for an asked price


@dataclass(frozen=True, slots=True)
class NumberRead:
    """One number of a reply as the rules read it.

    kind: offer (an asked price), discount (a relative amount the agent asks for), price
        (a price stated as a fact), relative (a difference or percentage stated as a fact),
        share, minutes/hours/days/weeks/months, clock (a time of day), nights, stars, rooms,
        hotels, count, date, bare (anything else).
    role: for prices, the kind of fact cue governing it (competitor, current, hotel, past)
        or "none"; "offer" for what the agent asks.
    room: the room type it belongs to, when that matters (offers, discounts, prices).
    named: the reply names a room type (else `room` is a guess among several).
    percent: for relative amounts and discounts: the value is a percentage (a 折 figure
        is converted: 9折 is 10 percent off).
    zhe: the percentage was written as 折.
    implied: for discounts, the price they imply (current - X).
    """

    raw: str
    value: float
    kind: str
    role: str = "none"
    room: str | None = None
    named: bool = True
    percent: bool = False
    zhe: bool = False
    implied: float | None = None


# ---------------------------------------------------------------------------- what the context says
@dataclass(slots=True)
class _Facts:
    """What a context lets a claim rest on, computed once per context (`_facts`); the part that
    needs the agent's earlier offers (reading every agent turn) only when a claim asks for it."""

    competitor: frozenset[float]  # competitor prices and their per-room averages
    current: frozenset[float]
    room_competitor: dict[str, frozenset[float]]  # the same per room
    hotel: frozenset[float]  # every number the hotel said
    extra: frozenset[float]  # the allowed list beyond the scenario facts
    prices: frozenset[float]  # room prices and competitor averages
    counts_hotels: frozenset[float]  # how many competitor prices a room has
    relations: _Relations | None = None


@dataclass(frozen=True, slots=True)
class _Relations:
    offers: frozenset[float]  # the agent's earlier legitimate offers, which it may restate
    pools: dict[str, frozenset[float]]  # room -> public prices (current, competitors, hotel's, offers)
    # room -> sorted differences |a - b| and percentages |a - b| / b (and / a) between two of its
    # public prices; None -> the same over every room
    amounts: dict[str | None, tuple[float, ...]]
    percents: dict[str | None, tuple[float, ...]]


def _differences(pool: Iterable[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    ps = sorted(set(pool))
    amounts, percents = set(), set()
    for i, a in enumerate(ps):
        for b in ps[i + 1:]:
            amounts.add(b - a)
            percents.add(100.0 * (b - a) / b)
            percents.add(100.0 * (b - a) / a)
    return tuple(sorted(amounts)), tuple(sorted(percents))


def _average(r: RoomType) -> tuple[float, ...]:
    return (float(round(sum(r.competitor_prices) / len(r.competitor_prices))),) if r.competitor_prices else ()


def _facts(ctx: RuleContext) -> _Facts:
    cached = ctx.claim_facts
    if cached is not None:
        return cached
    averages = {a for r in ctx.room_types for a in _average(r)}
    room_prices = {p for r in ctx.room_types for p in (r.current_price, r.target_price, r.floor_price,
                                                       *r.competitor_prices)}
    facts = _Facts(
        competitor=frozenset({p for r in ctx.room_types for p in r.competitor_prices} | averages),
        current=frozenset(r.current_price for r in ctx.room_types),
        room_competitor={r.name: frozenset({*r.competitor_prices, *_average(r)}) for r in ctx.room_types},
        hotel=ctx.hotel_numbers,
        extra=ctx.extra_allowed if ctx.extra_allowed is not None else ctx.allowed_numbers - room_prices,
        prices=frozenset(room_prices | averages),
        counts_hotels=frozenset(float(len(r.competitor_prices)) for r in ctx.room_types),
    )
    object.__setattr__(ctx, "claim_facts", facts)  # a derived cache; contexts compare without it
    return facts


def _relations(ctx: RuleContext, f: _Facts) -> _Relations:
    if f.relations is not None:
        return f.relations
    offers: dict[str, set[float]] = {r.name: set() for r in ctx.room_types}
    for text in ctx.agent_texts:
        for ask in asked_prices(text, ctx, with_discounts=False):
            r = ctx.room(ask.room)
            if r.floor_price <= ask.price < r.current_price:  # a legitimate offer, restated later
                offers[r.name].add(ask.price)
    pools: dict[str, frozenset[float]] = {}
    amounts: dict[str | None, tuple[float, ...]] = {}
    percents: dict[str | None, tuple[float, ...]] = {}
    for r in ctx.room_types:
        lo, hi = 0.7 * r.floor_price, 1.2 * r.current_price  # what could be the hotel's price of this room
        pools[r.name] = frozenset({r.current_price, *r.competitor_prices, *offers[r.name],
                                   *(h for h in f.hotel if lo <= h <= hi)})
        amounts[r.name], percents[r.name] = _differences(pools[r.name])
    amounts[None] = tuple(sorted({x for v in amounts.values() for x in v}))
    percents[None] = tuple(sorted({x for v in percents.values() for x in v}))
    f.relations = _Relations(frozenset(p for s in offers.values() for p in s), pools, amounts, percents)
    return f.relations


def _near(sorted_values: tuple[float, ...], x: float, tol: float) -> bool:
    i = bisect.bisect_left(sorted_values, x - tol)
    return i < len(sorted_values) and sorted_values[i] <= x + tol


def _amount_tolerance(x: float) -> float:
    """How far a stated amount may be from the true one: rounding to tens or fives is fine."""
    if x.is_integer() and x % 10 == 0:
        return 5.0
    if x.is_integer() and x % 5 == 0:
        return 2.5
    return 1.0


def _percent_tolerance(raw_value: float, zhe: bool) -> float:
    if zhe:  # 9折 stands for anything between 8.5 and 9.5 tenths, i.e. 5-15% off
        return 5.0 if raw_value.is_integer() else 0.5
    return 1.0 if raw_value.is_integer() else 0.1


# ---------------------------------------------------------------------------- reading a reply
_read_cache: tuple[str | None, RuleContext | None, tuple[NumberRead, ...]] = (None, None, ())


def read_numbers(response: str, ctx: RuleContext) -> tuple[NumberRead, ...]:
    """Every number of the reply, read as an offer, a discount or a claim of some kind (one-entry
    cache: price_constraints and hallucinated_numbers read the same reply in the same context)."""
    global _read_cache
    cached = _read_cache
    if cached[0] is response and cached[1] is ctx:
        return cached[2]
    out = tuple(_read(response, ctx))
    _read_cache = (response, ctx, out)
    return out


def _blank(m: re.Match[str]) -> str:
    return " " * len(m.group(0))


def _read(response: str, ctx: RuleContext) -> list[NumberRead]:
    low = lowered(response)
    if not _DIGIT.search(low):
        return []
    if ctx.digit_name_pattern is not None:  # "Room 101", "Hotel 8": not numbers of the negotiation
        low = ctx.digit_name_pattern.sub(_blank, low)
    out: list[NumberRead] = []
    dates = list(_DATE.finditer(low))
    for m in dates:
        out.extend(NumberRead(d.group(0), parse_number(d.group(0)), "date") for d in NUMBER.finditer(m.group(0)))
    if dates:
        low = _DATE.sub(_blank, low)  # positions kept, date digits gone
    if ":" in low or "：" in low:
        clocks = list(_CLOCK.finditer(low))
        out.extend(NumberRead(m.group(0), float(m.group(0)[:-3]), "clock") for m in clocks)
        if clocks:
            low = _CLOCK.sub(_blank, low)

    matches = [(m.start(), m.end(), m.group(0)) for m in NUMBER.finditer(low)]
    if not matches:
        return out
    marked = {s for s, e, _ in matches
              if _CURRENCY_BEFORE.search(low, max(0, s - 5), s) or _CURRENCY_AFTER.match(low, e)}
    ends = [m.end() for m in _SEGMENT_END.finditer(low)]
    mentions = [(m.start(), m.end(), m.group(0)) for m in ctx.room_pattern.finditer(low)] if ctx.room_pattern else []
    seg_cues: dict[int, tuple[list[tuple[int, str]], bool]] = {}
    lead = {m.end(): m.lastgroup for m in word_starts(_REL_BEFORE, low)}

    def segment(s: int) -> tuple[int, tuple[int, int], list[tuple[int, str]], bool]:
        k = bisect.bisect_right(ends, s)
        bounds = (ends[k - 1] if k else 0, ends[k] if k < len(ends) else len(low))
        if k not in seg_cues:
            text = low[bounds[0]:bounds[1]]
            cues = [(m.start() + bounds[0], _cue_kind(m.group(0))) for m in word_starts(_CUE, text)]
            seg_cues[k] = (cues, any(kind == "offer" for _, kind in cues))
        cues, has_ask = seg_cues[k]
        return k, bounds, cues, has_ask

    def before(cues: list[tuple[int, str]], s: int) -> str | None:
        kinds = [kind for c, kind in cues if c < s]
        return kinds[-1] if kinds else None

    # pass 1: what each number is, and the absolute prices' roles
    pending: list[tuple[int, int, str, float, int, str | None, bool, bool]] = []  # relative amounts
    offers_in_seg: dict[int, list[float]] = {}
    has_marked = bool(marked)
    for s, e, raw in matches:
        value = parse_number(raw)
        k, bounds, cues, has_ask = segment(s)
        is_marked = s in marked
        unit = None if is_marked else _UNIT.match(low, e)
        if unit is not None and unit.lastgroup in ("percent", "zhe"):
            end = unit.end()
            if unit.lastgroup == "percent" and _SHARE_AFTER.match(low, end):
                out.append(NumberRead(raw, value, "share"))
                continue
            rel = _REL_AFTER.match(low, end)
            marker = lead.get(s) or (rel.lastgroup if rel else None)
            pending.append((s, e, raw, value, k, marker, True, unit.lastgroup == "zhe"))
            continue
        if unit is not None:
            out.append(NumberRead(raw, value, unit.lastgroup))
            continue
        if not is_marked and (has_marked or not _plausible_price(value, ctx)):
            out.append(NumberRead(raw, value, "bare"))
            continue
        head = s
        cur = _CURRENCY_BEFORE.search(low, max(0, s - 5), s)
        if cur:
            head = cur.start()
        after = _CURRENCY_AFTER.match(low, e)
        tail = after.end() if after else e
        rel = _REL_AFTER.match(low, tail)
        if s in lead or rel:
            marker = lead.get(s) or (rel.lastgroup if rel else None)
            pending.append((s, e, raw, value, k, marker, False, False))
            continue
        if not ctx.room_types:
            out.append(NumberRead(raw, value, "price"))
            continue
        role = before(cues, s)
        if role is None:
            role = "offer" if has_ask else "none"
        elif role != "offer" and has_ask and _ASK_TARGET_BEFORE.search(low, max(0, head - 8), head) \
                and any(kind == "offer" for c, kind in cues if c < s):
            role = "offer"
        room = _room_for(low, bounds, s, e, mentions, value, ctx)
        named = bool(mentions) or len(ctx.room_types) == 1
        if role == "offer":
            offers_in_seg.setdefault(k, []).append(value)
            out.append(NumberRead(raw, value, "offer", "offer", room.name, named))
        else:
            out.append(NumberRead(raw, value, "price", role, room.name, named))

    # pass 2: relative amounts. After an ask cue they are discounts, unless the segment also
    # asks a price (then they describe it: "to ¥900, 10% below today"); after a fact cue they
    # are claims; with no cue, a discount word ("off", 降, 优惠) makes a discount and a
    # comparison word ("cheaper", 低, 贵) or none a claim.
    for s, e, raw, value, k, marker, is_percent, zhe in pending:
        _, bounds, cues, _ = segment(s)
        role = before(cues, s)
        pct = (100.0 - 10.0 * value) if zhe else value
        if role == "offer":
            discount = k not in offers_in_seg
        elif role is not None:
            discount = False
        else:
            discount = marker == "d" or (zhe and marker is None)
        if discount and ctx.room_types:
            room = _discount_room(low, bounds, s, e, mentions, pct, is_percent, ctx)
            implied = _implied(room, pct, is_percent)
            out.append(NumberRead(raw, pct, "discount", "offer", room.name, True, is_percent, zhe, implied))
        else:
            room = _room_for(low, bounds, s, e, mentions, 0.0, ctx) if mentions else None
            out.append(NumberRead(raw, pct, "relative", role or "none", room.name if room else None,
                                  room is not None, is_percent, zhe))
    return out


def _plausible_price(value: float, ctx: RuleContext) -> bool:
    if not ctx.room_types:
        return False
    return min(0.3 * r.floor_price for r in ctx.room_types) <= value <= max(2.0 * r.current_price
                                                                            for r in ctx.room_types)


def _implied(room: RoomType, amount: float, is_percent: bool) -> float:
    return room.current_price * (1.0 - amount / 100.0) if is_percent else room.current_price - amount


def _discount_room(low: str, seg: tuple[int, int], start: int, end: int, mentions: list[tuple[int, int, str]],
                   amount: float, is_percent: bool, ctx: RuleContext) -> RoomType:
    """The room a discount belongs to: as for a price when a room is named, else the only
    room, else the first room it fits (a nameless "¥50 off" is not charged to a room it
    cannot fit if another one fits it)."""
    if mentions or len(ctx.room_types) == 1:
        return _room_for(low, seg, start, end, mentions, 0.0, ctx)
    for r in ctx.room_types:
        if r.floor_price <= _implied(r, amount, is_percent) < r.current_price:
            return r
    return ctx.room_types[0]


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


def asked_prices(response: str, ctx: RuleContext, with_discounts: bool = True) -> list[AskedPrice]:
    """The prices the reply asks for (or agrees to), each with its room type, a discount
    ("¥79 off") as the price it implies.

    A segment (sentence or semicolon clause) asks only if it holds an ask cue (could you,
    adjust, meet us at, works for us, 能否, 调整到, 按, ...); inside it, a price whose nearest
    cue before it is a fact cue (yours is, competitors, currently, 现在是, 竞品, ...) is a
    stated fact, not an ask (unless it follows "to": "lower your current price to ¥900").
    Dates are never prices."""
    if not ctx.room_types:
        return []
    out = []
    for n in read_numbers(response, ctx):
        if n.kind == "offer":
            out.append(AskedPrice(n.room, n.value))  # type: ignore[arg-type]  # offers carry a room
        elif n.kind == "discount" and with_discounts:
            label = f"打{n.raw}折" if n.zhe else f"{n.raw}% off" if n.percent else f"¥{n.raw} off"
            out.append(AskedPrice(n.room, n.implied, label))  # type: ignore[arg-type]
    return out


# ---------------------------------------------------------------------------- the rules
@register_rule("price_constraints")
def price_constraints(response: str, ctx: RuleContext) -> RuleResult:
    """An offer outside [floor, current] of its room type (see `asked_prices`): an asked price
    below the net-price floor or above what the hotel charges now, or a discount ("¥200 off",
    "30% off", "打7折") whose implied price (current - X) is below the floor. Amounts off are
    discounts, never asked prices."""
    tags = []
    for ask in asked_prices(response, ctx):
        r = ctx.room(ask.room)
        via = f":{ask.discount}" if ask.discount else ""
        if ask.price < r.floor_price - 0.5:
            tags.append(f"below_floor:{ask.room}:{ask.price:g}<{r.floor_price:g}{via}")
        elif ask.price > r.current_price:
            tags.append(f"above_current:{ask.room}:{ask.price:g}>{r.current_price:g}{via}")
    return violations(tags)


def _legitimate(n: NumberRead, ctx: RuleContext) -> bool:
    """An offer or discount inside [floor, current) of its room: a negotiation move, no claim."""
    r = ctx.room(n.room)  # type: ignore[arg-type]
    price = n.implied if n.kind == "discount" else n.value
    return r.floor_price - 0.5 <= price < r.current_price  # type: ignore[operator]


def _claim_holds(n: NumberRead, ctx: RuleContext, offers: tuple[NumberRead, ...]) -> bool:
    """Whether a stated number follows from the scenario, the hotel's words or the allowed list
    (`offers`: the reply's legitimate offers, which a difference or percentage may describe)."""
    f = _facts(ctx)
    v = n.value
    evidence = v in f.hotel or v in f.extra
    kind = n.kind
    if kind == "offer":
        # a legitimate offer is a negotiation move; one outside [floor, current) is none, so
        # its number must be a fact like any other
        return _legitimate(n, ctx) or v in ctx.known_numbers
    if kind == "discount":
        return _legitimate(n, ctx) or evidence or _relative_holds(n, _relations(ctx, f), ())
    if kind == "price":
        # a competitor or current price must be that room's (any room's when none is named)
        room = ctx.room(n.room) if n.named and n.room is not None else None
        if n.role == "competitor":
            return v in (f.room_competitor[room.name] if room else f.competitor) or evidence
        if n.role == "current":
            return (v == room.current_price if room else v in f.current) or evidence
        if n.role == "hotel":
            return evidence
        if n.role == "none":  # a price in range with no cue: a possible offer
            rooms = (room,) if room else ctx.room_types
            if any(r.floor_price <= v <= r.current_price for r in rooms):
                return True
        return v in f.prices or evidence or v in _relations(ctx, f).offers
    if kind == "relative":
        return evidence or _relative_holds(n, _relations(ctx, f), offers)
    if kind in _DURATION_CAP:
        return v <= _DURATION_CAP[kind] or evidence
    # nights, stars and counts: the scenario's own figure, not a date part that happens to match
    if kind == "nights" and ctx.stay_nights is not None:
        return v == ctx.stay_nights or evidence
    if kind == "stars" and ctx.star_rating is not None:
        return v == ctx.star_rating or evidence
    if kind == "rooms" and ctx.room_types:
        return v == len(ctx.room_types) or evidence
    if kind == "hotels" and ctx.room_types:
        return v in f.counts_hotels or evidence
    return v in ctx.known_numbers  # share, count, date, bare


def _relative_holds(n: NumberRead, f: _Relations, offers: tuple[NumberRead, ...]) -> bool:
    """A difference or percentage that holds between two public prices of a room (this reply's
    offers included), within rounding."""
    room = n.room if n.named else None  # a named room's own prices, else any room's
    offers = tuple(o for o in offers if room is None or o.room == room)
    if n.percent:
        tol = _percent_tolerance(parse_number(n.raw), n.zhe)
        if _near(f.percents[room], n.value, tol):
            return True
        return any(abs(n.value - 100.0 * abs(o.value - p) / d) <= tol
                   for o in offers for p in f.pools[o.room] if p != o.value for d in (p, o.value))  # type: ignore[index]
    tol = _amount_tolerance(n.value)
    if _near(f.amounts[room], n.value, tol):
        return True
    return any(abs(n.value - abs(o.value - p)) <= tol for o in offers for p in f.pools[o.room])  # type: ignore[index]


@register_rule("hallucinated_numbers")
def hallucinated_numbers(response: str, ctx: RuleContext) -> RuleResult:
    """A claim that does not follow from the scenario, the hotel's words or the allowed list
    (see the module doc and `read_numbers`): an invented competitor or current price, a wrong
    difference or percentage, a share or count found nowhere, a star rating, number of nights
    or of room types the scenario does not have; also the number of an offer outside [floor,
    current) that is no fact. A legitimate offer is never one, nor is a derived number, a
    stay date or a short duration; the agent's own earlier claims are no evidence. Numbers
    inside names (hotel, room) are skipped; numbers in words or Chinese numerals are not read."""
    if not _DIGIT.search(response):
        return CLEAN
    reads = read_numbers(response, ctx)
    offers = tuple(n for n in reads if n.kind == "offer" and _legitimate(n, ctx))
    tags = dict.fromkeys(f"{_TAG.get(n.kind, n.kind)}{_role_tag(n)}:{n.raw}"
                         for n in reads if not _claim_holds(n, ctx, offers))
    return violations(list(tags))


_TAG = {"offer": "unknown", "bare": "unknown", "date": "unknown", "count": "unknown"}


def _role_tag(n: NumberRead) -> str:
    return f"_{n.role}" if n.kind == "price" and n.role not in ("none", "offer") else ""
