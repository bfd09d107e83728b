"""The local judge's fact check: the prices a reply cites, the role each plays, and whether
the scenario or the hotel's own words back it (DESIGN.md §7, "an offer is not a claim").

A price the agent proposes for a room is an *offer*: valid inside [floor, current), and
*anchored* when it is the target, a competitor figure or a price the hotel named for that
room (a number the negotiation explains). Every other price is a *claim* — a competitor's
price, the room's current price, the agreed price, the hotel's offer quoted back, a
percentage or a difference — and holds only when the scenario or the hotel's turns give
it. The agent's own earlier turns are never evidence: an invention repeated stays one.

Pure functions of the data block's content (what the judge server reads off the request);
the phrase cues follow the expert agent's and the simulator's wording, English and Chinese.
This is the training judge's own reading; the evaluation judge has its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["competitor", "current", "agreed", "hotel", "offer", "percent", "other"]
CLAIM_ROLES: frozenset[str] = frozenset({"competitor", "current", "agreed", "hotel", "percent", "other"})


def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(parts), re.I)


_NUM = r"(\d+(?:,\d{3})*(?:\.\d+)?)"
_CURRENCY = re.compile(rf"(?:¥|￥|CNY|RMB)\s?{_NUM}|{_NUM}\s?(?:元|块钱|块|yuan\b|CNY\b|RMB\b)", re.I)
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s?(?:%|％|percent\b)|百分之(\d+(?:\.\d+)?)", re.I)
# a bare number is read as a price only when the reply writes no currency at all; dates,
# times, ratings and counts are not prices
_BARE = re.compile(r"(?<![A-Za-z0-9_.,:/\-])(\d{2,6}(?:\.\d+)?)(?![A-Za-z0-9_.,:/\-%％])")
_NOT_A_PRICE_AFTER = _rx(r"^\s*(?:%|％|percent|hours?|hrs?|days?|nights?|weeks?|months?|years?|-?stars?|rooms?|",
                         r"guests?|people|bookings?|orders?|clicks?|reviews?|小时|天|晚|周|个月|年|星|间|位|人|个|单|条)")
_SENTENCE = re.compile(r"(?:[^.!?。！？\n]|\.(?=\d))+[.!?。！？]*")

# role cues, read in the text just before a price (since the previous price of the sentence)
_OFFER_RIGHT_BEFORE = _rx(r"(?:\bto|\bmeet (?:us|me) at|\bhow about|\bwhat about)\s*$",
                          r"(?:调整到|调整为|调到|降到|降至|做到|给到|(?<!就)按)\s*$")
_CURRENT = _rx(r"\byours\b", r"\byour (?:current |own |room )?(?:price|rate)s?\b", r"\bcurrent(?:ly)?\b",
               r"\b(?:you'?re|you are) (?:at|selling|charging|priced)", r"\bright now\b", r"\btoday\b",
               r"您现在", r"现在是", r"现在的价格", r"目前", r"现价", r"当前", r"您的价格")
_ASK = _rx(r"\b(?:could|can|would|will) you\b", r"\bmeet (?:us|me)\b", r"\badjust", r"\bset\b", r"\blower\b",
           r"\bbring\b", r"\bmove\b", r"\bhow about\b", r"\bwhat about\b", r"\bconsider\b", r"\bcut\b", r"\breduc",
           r"\bdrop\b", r"能否", r"可否", r"能不能", r"可不可以", r"调整", r"调到", r"降到", r"降价", r"(?<!就)按",
           r"折中")
_COMPETITOR = _rx(r"competitor", r"similar hotels?", r"nearby", r"\bmarket\b", r"other hotels", r"\bsells?\b",
                  r"hotels? (?:around|next door|in the area)", r"竞品", r"竞争对手", r"周边", r"同类", r"市场", r"别家",
                  r"其他酒店", r"附近")
_CONNECTOR = re.compile(r"^\s*(?:and|or|or even|,|，|、|/|和|或|或者|与|及|以及)?\s*$", re.I)
# sentence cues
_CONFIRM = _rx(r"\bto confirm\b", r"\bconfirm(?:ed|ing)?\s*:", r"确认一下", r"跟您确认", r"再确认")
_ACCEPTING = _rx(r"\bworks\b", r"\bit is\b", r"\bdeal\b", r"\bagreed?\b", r"\baccept", r"\bperfect\b", r"\bgreat\b",
                 r"\bwonderful\b", r"\bgo with\b", r"\bsounds good\b", r"没问题", r"就按", r"太好了", r"好的",
                 r"完全可以", r"可以接受", r"成交")
_DIFFERENCE = _rx(r"\boff\b", r"\bless\b", r"\blower than\b", r"\bcheaper\b", r"\bbelow\b", r"\bgap\b",
                  r"\bdifference\b", r"\bmore than\b", r"\babove\b", r"\bhigher\b", r"低", r"便宜", r"差", r"高出",
                  r"少")


@dataclass(frozen=True, slots=True)
class RoomFacts:
    name: str
    current: float
    competitors: tuple[float, ...]
    target: float
    floor: float

    @classmethod
    def from_payload(cls, row: Any) -> RoomFacts | None:
        """From a `room_types` entry of the data block; None when it is not readable."""
        if not isinstance(row, Mapping) or not str(row.get("name") or "").strip():
            return None
        try:
            nums = [float(row[k]) for k in ("current_price", "target_price", "floor_price")]
            comps = tuple(float(p) for p in row.get("competitor_prices") or ())
        except (KeyError, TypeError, ValueError):
            return None
        if not all(math.isfinite(x) for x in (*nums, *comps)):
            return None
        return cls(str(row["name"]), nums[0], comps, nums[1], nums[2])

    def in_range(self, price: float) -> bool:
        return self.floor <= price < self.current


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a reply's figures are checked against: the scenario's rooms, the prices the hotel
    named (per room; key None for a price in a sentence that names no room) and the prices
    the hotel agreed to."""

    rooms: Mapping[str, RoomFacts]
    hotel: Mapping[str | None, frozenset[float]]
    agreed: Mapping[str, float]

    def hotel_figures(self, room: str | None) -> frozenset[float]:
        if room is None:
            return frozenset().union(*self.hotel.values()) if self.hotel else frozenset()
        return self.hotel.get(room, frozenset()) | self.hotel.get(None, frozenset())

    def candidates(self, room: str | None) -> list[RoomFacts]:
        return [self.rooms[room]] if room in self.rooms else list(self.rooms.values())


@dataclass(frozen=True, slots=True)
class Cited:
    """One price (or percentage) in a reply."""

    value: float
    room: str | None  # the room it is about (None: no room can be told)
    role: Role
    ok: bool  # a claim the facts back, or an offer inside [floor, current)
    anchored: bool = False  # offers only: the target, a competitor figure or the hotel's figure
    sentence: int = 0

    @property
    def is_claim(self) -> bool:
        return self.role in CLAIM_ROLES


def room_mentions(text: str, names: Iterable[str]) -> list[tuple[int, str]]:
    """(position, room name) of every mention, in text order."""
    low = text.lower()
    return sorted((m.start(), n) for n in names for m in re.finditer(re.escape(n.lower()), low))


def _price_spans(text: str) -> list[tuple[int, int, float]]:
    spans = []
    for m in _CURRENCY.finditer(text):
        raw = m.group(1) or m.group(2)
        spans.append((m.start(), m.end(), float(raw.replace(",", ""))))
    if spans:
        return spans
    for m in _BARE.finditer(text):
        value = float(m.group(1))
        if value >= 50 and not _NOT_A_PRICE_AFTER.search(text[m.end():m.end() + 12]):
            spans.append((m.start(), m.end(), value))
    return spans


def sentences(text: str) -> list[tuple[int, str]]:
    """(start offset, sentence) pieces, split at sentence punctuation (not at a decimal point)."""
    return [(m.start(), m.group(0)) for m in _SENTENCE.finditer(text) if m.group(0).strip()]


def hotel_evidence(rooms: Mapping[str, RoomFacts], hotel_turns: Sequence[str],
                   agreed: Mapping[str, float]) -> Evidence:
    """Every price the hotel named, by the room its sentence names (the only room when there
    is one)."""
    figures: dict[str | None, set[float]] = {}
    single = next(iter(rooms)) if len(rooms) == 1 else None
    for turn in hotel_turns:
        for _, sentence in sentences(turn):
            values = [v for _, _, v in _price_spans(sentence)]
            if not values:
                continue
            named = sorted({n for _, n in room_mentions(sentence, rooms)}) or [single]
            for name in named:
                figures.setdefault(name, set()).update(values)
    return Evidence(rooms, {k: frozenset(v) for k, v in figures.items()}, dict(agreed))


def _derived(value: float, figures: Iterable[float], percent: bool) -> bool:
    """A difference or a percentage that two known figures give (to rounding)."""
    fs = sorted({f for f in figures if f > 0})
    for i, a in enumerate(fs):
        for b in fs[i + 1:]:
            if percent:
                if min(abs(100 * (b - a) / b - value), abs(100 * (b - a) / a - value)) <= 1.0:
                    return True
            elif abs((b - a) - value) < 0.5:
                return True
    return False


def _room_of(pos: int, start: int, end: int, mentions: list[tuple[int, str]], single: str | None) -> str | None:
    before = [n for p, n in mentions if start <= p < pos]
    if before:
        return before[-1]
    after = [n for p, n in mentions if pos <= p < end]
    return after[0] if after else single


def _role(local: str, before: str, sentence: str, previous: Role | None) -> Role:
    if _CONFIRM.search(sentence):
        return "agreed"
    if _OFFER_RIGHT_BEFORE.search(local):
        return "offer"
    if _CURRENT.search(local):
        return "current"
    if _ASK.search(local):
        return "offer"
    if _COMPETITOR.search(local):
        return "competitor"
    if previous is not None and _CONNECTOR.match(local):
        return previous
    if _ACCEPTING.search(sentence) and not _ASK.search(sentence):
        return "hotel"
    if _COMPETITOR.search(before):
        return "competitor"
    if _ASK.search(sentence):
        return "offer"
    return "other"


def _check(value: float, room: str | None, role: Role, ev: Evidence, sentence: str,
           offers: Iterable[float]) -> tuple[bool, bool]:
    """(ok, anchored) for one cited price."""
    cands = ev.candidates(room)
    heard = ev.hotel_figures(room)
    if role == "offer":
        valid = [r for r in cands if r.in_range(value)]
        anchored = any(value == r.target or value in r.competitors or value in heard for r in valid)
        return bool(valid), anchored
    if role == "competitor":
        ok = any(value in r.competitors for r in cands) or value in heard
    elif role == "current":
        ok = any(value == r.current for r in cands) or value in heard
    elif role == "agreed":
        ok = value == ev.agreed.get(room) if room is not None else value in ev.agreed.values()
    elif role == "hotel":
        ok = value in heard or (room is not None and ev.agreed.get(room) == value)
    else:  # other: any figure the facts hold, or a price inside a room's range
        ok = value in heard or any(value in (r.current, r.target, r.floor, *r.competitors) or r.in_range(value)
                                   for r in cands)
    if not ok and _DIFFERENCE.search(sentence):
        known = [f for r in cands for f in (r.current, *r.competitors)] + [*heard, *offers]
        ok = _derived(value, known, percent=False)
    return ok, False


def read_figures(text: str, ev: Evidence) -> list[Cited]:
    """Every price and percentage in `text` with its room, role and verdict."""
    names = list(ev.rooms)
    single = names[0] if len(names) == 1 else None
    mentions = room_mentions(text, names)
    out: list[Cited] = []
    for si, (start, sentence) in enumerate(sentences(text)):
        end = start + len(sentence)
        prev_end, prev_role = 0, None
        spans = _price_spans(sentence)
        offers = [v for *_, v in spans]
        for s, e, value in spans:
            role = _role(sentence[prev_end:s], sentence[:s], sentence, prev_role)
            room = _room_of(start + s, start, end, mentions, single)
            ok, anchored = _check(value, room, role, ev, sentence, offers)
            out.append(Cited(value, room, role, ok, anchored, si))
            prev_end, prev_role = e, role
        for m in _PERCENT.finditer(sentence):
            value = float(m.group(1) or m.group(2))
            room = _room_of(start + m.start(), start, end, mentions, single)
            known = [f for r in ev.candidates(room) for f in (r.current, *r.competitors)]
            known += [*ev.hotel_figures(room), *offers]
            out.append(Cited(value, room, "percent", _derived(value, known, percent=True), False, si))
    return out
