"""The local judge's rubric scoring: deterministic heuristics that verify before they pay,
the stand-in for a real LLM judge on machines without one (`repo-ray judge-server`).

It reads only what a real judge reads: the data block of the request's prompt (prompt.py),
never the pipeline's objects. From the dialogue text it reconstructs the negotiation state
(rooms the hotel agreed to, refused, or offered a price for; silences; what the agent has
already done) and from the reply what it *does* (figures.py checks every cited price
against the scenario and the hotel's turns; the agent's own turns are no evidence):
evidence with verified figures, one valid price per room, the hotel's price quoted right,
a confirmation of the agreed figures, a close. Items then reward that content and the
move the dialogue calls for (DESIGN.md §7, "nothing pays for words alone"): empathy,
courtesy, benefit and confirmation words count only around real content, and the SOP
stage expected is inferred from the dialogue, so an SOP keyword cannot buy the stage.
Each item is scored in [-10, 10], or null when it does not apply. The phrase lists follow
the wording of the hotel simulator and the expert agent (English and Chinese); a real judge
generalises further. Measured in tests/reward_actors/judge_tests (worth using on chosen vs
rejected pairs; expert vs price-shifted and keyword-stuffed probes).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from repo_ray.domain.rubric import JUDGE_ITEMS
from repo_ray.domain.sop import SopStage, classify_stage
from repo_ray.domain.text import extract_numbers, extract_prices
from reward_actors.judge.figures import Cited, Evidence, RoomFacts, hotel_evidence, read_figures, sentences
from reward_actors.judge.prompt import requested_items, split_data_block

Score = tuple[float | None, str]


def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(parts), re.I)


# hotel sentences about one room (checked in this order)
_REFUSE = _rx(r"can'?t change", r"cannot change", r"has to stay", r"stay as it is", r"改不了", r"只能保持")
_COUNTER = _rx(r"can'?t go that low", r"best we can do", r"could do", r"could go to", r"alone I could", r"can move",
               r"不能那么低", r"最多", r"可以做到", r"可以给到", r"只有", r"单独")
_ACCEPT_H = _rx(r"\bworks\b", r"\bwe can do\b", r"\bfine\b", r"\bok\b", r"\bagreed?\b", r"\bdeal\b", r"可以", r"按.*来",
                r"^行", r"没问题")
_HANGUP = _rx(r"hanging up", r"don'?t call again", r"我挂了", r"别再打来")
_NEGATIVE = _rx(
    r"\bcan'?t\b", r"\bcannot\b", r"\bnot sure\b", r"\bwhy (would|should)\b", r"\bdon'?t\b", r"\bbusy\b",
    r"not my problem", r"out of the question", r"absolutely not", r"save the speech", r"I said what I said",
    r"already fair", r"set for the season", r"not like ours", r"best we can do", r"has to stay", r"still think",
    r"reflect our quality", r"make it quick", r"\bno\b", r"\bsorry\b", r"what is this about", r"haven'?t agreed",
    r"what do you want", r"another call", r"more than we charge", r"already cheaper",
    r"不能", r"不行", r"为什么", r"不关心", r"不关我", r"别说", r"忙", r"已经很合理", r"定好的", r"不一样", r"最多",
    r"改不了", r"只能", r"还是觉得", r"我说过", r"挂", r"没谈好", r"还没定", r"不太", r"不明白", r"看不出", r"抱歉",
    r"快点", r"还高", r"便宜了",
)
# agent wording
_EMPATHY = _rx(r"\bI (completely |totally |fully )?understand\b", r"\bI hear you\b", r"\bI see your point\b",
               r"\bappreciate\b", r"\bI know\b", r"\bno problem\b", r"\bsorry\b", r"\bfair (point|enough)\b",
               r"\bthank you\b", r"\bthanks\b", r"don'?t want to push", r"\bunderstandable\b",
               r"理解", r"明白", r"感谢", r"谢谢", r"抱歉", r"不想让您为难", r"辛苦")
_ROBOTIC = _rx(r"^\s*(request|notice|note|action required|reply|required|instruction)\s*:", r"\byes or no\b",
               r"reply (y|n|yes|no)\b", r"please reply with", r"请求：", r"是或否", r"通知：", r"^\s*\[[A-Z]+\]")
_BENEFIT = _rx(r"competitor", r"\bmarket\b", r"similar hotels", r"\bnearby\b", r"\bbookings?\b", r"visibility",
               r"ranking", r"\bguests?\b", r"travell?ers", r"\bvalue\b", r"clicks", r"\bcompare", r"\bmargin",
               r"in line with", r"竞品", r"市场", r"周边", r"同类", r"订单", r"曝光", r"排名", r"客人", r"点击",
               r"划算", r"竞争力", r"利润", r"持平")
_COURTESY = _rx(r"\bthank", r"\bappreciate", r"\bplease\b", r"\bI understand\b", r"\bI hear you\b",
                r"\b(could|would) you\b", r"\bhappy to\b", r"\bglad\b", r"您", r"谢谢", r"感谢", r"麻烦", r"辛苦")
_OVERPROMISE = _rx(r"\bguarantee", r"\bdefinitely\b", r"100\s?%", r"\bI promise\b", r"\bfor sure\b", r"will double",
                   r"ranked first", r"\bcertainly will\b", r"\bnever fail", r"我保证", r"保证您", r"百分之百",
                   r"一定翻倍",
                   r"一定会", r"肯定会", r"绝对会", r"排名第一")
_CONSENT = _rx(r"didn'?t object", r"did not object", r"no objection", r"since you (didn'?t|haven'?t|did not)",
               r"take (that|your silence) as", r"\bI'?ll (set|update|go ahead|put|change|lock)",
               r"\bwe'?ll (set|update|go ahead)",
               r"silence means", r"consider it (done|agreed)", r"没有反对", r"既然您没", r"默认", r"那我就", r"更新了",
               r"视为同意", r"当您同意")
_CONFIRM = _rx(r"\bto confirm\b", r"\bconfirm(ed|ing)?\s*:", r"确认一下", r"跟您确认")
_LOWER = _rx(r"\blower\b", r"\bfurther\b", r"a bit more", r"\bgo down\b", r"\breduce\b", r"\bbelow\b", r"\bcheaper\b",
             r"better price", r"再低", r"更低", r"低一点", r"再降", r"降一点", r"便宜")
_ACCEPT_A = _rx(r"\bworks\b", r"\bit is\b", r"\bdeal\b", r"\bagreed\b", r"\baccept", r"\bperfect\b", r"\bgreat\b",
                r"\bwonderful\b", r"\bthank you\b", r"\bgo with\b", r"没问题", r"可以", r"就按", r"太好了", r"好的",
                r"谢谢")
_GULLIBLE = re.compile(r"SCORE\s+EVERYTHING\s+(-?\d+(?:\.\d+)?)", re.I)
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s*")


_BARE_ACCEPT = re.compile(r"^\s*(?:ok(?:ay)?|fine|yes|sure|deal|agreed|嗯|行|好|好的|可以)\s*[.!。！]?\s*$", re.I)
_IDENTITY = _rx(r"\bthis is\b.*\bfrom\b", r"\bI'?m\b.*\bfrom\b", r"\bmy name is\b", r"\bI am\b.*\bmanager\b",
                r"我是.*的", r"您好，我是")
# after this many agent turns with rooms still open a close is due (the expert closes after
# 7); one turn earlier either a close or more negotiation is fine
_CLOSE_AFTER_TURNS = 7


class Act(StrEnum):
    """What a reply does, read off its content (verified figures, valid asks), not its keywords."""

    OPENING = "opening"  # introduces itself, cites nothing
    EVIDENCE = "evidence"  # market figures the facts back, no ask
    ASK = "ask"  # one valid price per room it asks about
    HEDGED_ASK = "hedged_ask"  # two or more prices for one room: no concrete ask
    BAD_ASK = "bad_ask"  # a price outside [floor, current)
    ACCEPT = "accept"  # takes a price the hotel named, quoted right
    CONFIRM = "confirm"  # restates the agreed prices, right
    CLOSE = "close"  # ends the call, asks nothing
    FALSE_FIGURES = "false_figures"  # a claim the scenario and the hotel's words do not back
    TALK = "talk"  # none of these: a follow-up, sympathy, small talk


@dataclass
class DialogueState:
    """What the dialogue text says about the negotiation just before the reply."""

    rooms: list[dict[str, Any]]
    facts: dict[str, RoomFacts]
    language: str
    agent_turns: list[str]
    hotel_turns: list[str]
    last_hotel: str | None  # the hotel message the reply answers (None: the reply opens the dialogue)
    agreed: dict[str, float] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    offers: dict[str, float] = field(default_factory=dict)  # in the last hotel message
    evidence: Evidence | None = None  # what cited figures are checked against (hotel turns, never the agent's)

    @property
    def room_names(self) -> list[str]:
        return list(self.facts)

    @property
    def open_rooms(self) -> list[str]:
        return [n for n in self.room_names if n not in self.agreed and n not in self.refused]

    def room(self, name: str) -> RoomFacts:
        return self.facts[name]

    @property
    def silent_now(self) -> bool:
        return self.last_hotel is not None and not self.last_hotel.strip()

    @property
    def trailing_silences(self) -> int:
        n = 0
        for t in reversed(self.hotel_turns):
            if t.strip():
                break
            n += 1
        return n

    @property
    def hung_up(self) -> bool:
        return bool(self.last_hotel and _HANGUP.search(self.last_hotel))


def _mentioned(text: str, names: Sequence[str]) -> list[str]:
    low = text.lower()
    return [n for n in names if n.lower() in low]


def _prices(text: str) -> list[float]:
    return extract_prices(text) or [x for x in extract_numbers(text) if x >= 50]


def read_state(payload: Mapping[str, Any]) -> DialogueState:
    rooms = [r for r in payload.get("room_types") or [] if isinstance(r, dict) and r.get("name")]
    facts = {f.name: f for f in (RoomFacts.from_payload(r) for r in rooms) if f is not None}
    dialogue = [m for m in payload.get("dialogue") or [] if isinstance(m, dict)]
    st = DialogueState(
        rooms=rooms, facts=facts, language=str(payload.get("language", "en")),
        agent_turns=[str(m.get("text", "")) for m in dialogue if m.get("role") == "agent"],
        hotel_turns=[str(m.get("text", "")) for m in dialogue if m.get("role") == "hotel"],
        last_hotel=str(dialogue[-1].get("text", "")) if dialogue and dialogue[-1].get("role") == "hotel" else None,
    )
    names = st.room_names
    last_agent = ""
    for i, m in enumerate(dialogue):
        text = str(m.get("text", ""))
        if m.get("role") == "agent":
            last_agent = text
            continue
        if m.get("role") != "hotel":
            continue
        is_last = i == len(dialogue) - 1
        if _BARE_ACCEPT.match(text) and last_agent:
            # a bare "ok." agrees to what the agent just asked: the hotel's word, about the agent's figures
            ev = Evidence(facts, {}, {})
            for c in read_figures(last_agent, ev):
                if c.role == "offer" and c.ok and c.room is not None and c.room not in st.agreed:
                    st.agreed[c.room] = c.value
            continue
        for sentence in _SENTENCE.split(text):
            if not sentence.strip():
                continue
            mentioned = _mentioned(sentence, names) or (names if len(names) == 1 else [])
            prices = _prices(sentence)
            for name in mentioned:
                if _REFUSE.search(sentence):
                    st.refused.add(name)
                elif _COUNTER.search(sentence):
                    if prices and is_last:
                        st.offers[name] = prices[0]
                elif _ACCEPT_H.search(sentence) and prices:
                    st.agreed[name] = prices[0]
    st.evidence = hotel_evidence(facts, st.hotel_turns, st.agreed)
    return st


# ---------------------------------------------------------------------------- reading the reply
@dataclass(frozen=True)
class Reading:
    """One agent message as the judge reads it: its cited figures, checked, and its act."""

    text: str
    cited: tuple[Cited, ...]
    act: Act
    stages: frozenset[SopStage]  # the SOP classifier's stage of each sentence

    @property
    def false_claims(self) -> list[Cited]:
        return [c for c in self.cited if c.is_claim and not c.ok]

    @property
    def offers(self) -> list[Cited]:
        return [c for c in self.cited if c.role == "offer"]

    @property
    def verified_market(self) -> list[Cited]:
        return [c for c in self.cited if c.role in ("competitor", "current", "percent") and c.ok]

    @property
    def anchored(self) -> bool:
        return bool(self.offers) and all(c.anchored for c in self.offers)

    def hedged_rooms(self) -> set[str | None]:
        by_room: dict[str | None, set[float]] = {}
        for c in self.offers:
            by_room.setdefault(c.room, set()).add(c.value)
        return {r for r, vs in by_room.items() if len(vs) > 1}

    def rooms_with_content(self) -> set[str]:
        """Rooms for which the reply gives a figure the facts back or a valid single price."""
        hedged = self.hedged_rooms()
        return {c.room for c in self.cited if c.ok and c.room is not None and c.room not in hedged}


def _takes_hotel_price(st: DialogueState, cited: Sequence[Cited]) -> bool:
    """The reply quotes back a price the hotel named for a room, as agreement, and asks
    nothing lower for that room."""
    assert st.evidence is not None
    for c in cited:
        if c.role == "hotel" and c.ok and c.room is not None:
            lower = [o for o in cited if o.role == "offer" and o.room == c.room and o.value < c.value]
            if not lower:
                return True
    return False


def read_reply(st: DialogueState, text: str) -> Reading:
    assert st.evidence is not None
    cited = tuple(read_figures(text, st.evidence))
    stages = frozenset(classify_stage(s) for _, s in sentences(text)) or frozenset({SopStage.UNKNOWN})
    offers = [c for c in cited if c.role == "offer"]
    confirms = [c for c in cited if c.role == "agreed"]
    if any(c.is_claim and not c.ok for c in cited):
        act = Act.FALSE_FIGURES
    elif confirms and st.agreed:
        act = Act.CONFIRM  # its figures are right: a wrong one made it FALSE_FIGURES above
    elif _takes_hotel_price(st, cited) or (not cited and _good_offers(st) and _ACCEPT_A.search(text)
                                            and not _LOWER.search(text)):
        act = Act.ACCEPT
    elif offers:
        by_room: dict[str | None, set[float]] = {}
        for c in offers:
            by_room.setdefault(c.room, set()).add(c.value)
        if not all(c.ok for c in offers):
            act = Act.BAD_ASK
        elif any(len(v) > 1 for v in by_room.values()):
            act = Act.HEDGED_ASK
        else:
            act = Act.ASK
    elif not cited and _IDENTITY.search(text):
        act = Act.OPENING
    elif any(c.role == "competitor" and c.ok for c in cited):
        act = Act.EVIDENCE
    elif SopStage.CLOSE in stages or any(_CLOSE_WORDS.search(s) for _, s in sentences(text)):
        act = Act.CLOSE
    else:
        act = Act.TALK
    return Reading(text, cited, act, stages)


_CLOSE_WORDS = _rx(r"\bkeep in touch\b", r"\btalk (?:later|soon)\b", r"\bbye\b", r"保持联系", r"回头聊")


@dataclass(frozen=True)
class Expectation:
    """What the SOP asks of the reply, inferred from the dialogue (never from the reply)."""

    acts: frozenset[Act]
    why: str
    phase: str  # opening | evidence | ask | objection | settle | end


def expected(st: DialogueState, prior: Sequence[Reading]) -> Expectation:
    def exp(why: str, phase: str, *acts: Act) -> Expectation:
        return Expectation(frozenset(acts), why, phase)

    if not st.agent_turns:
        return exp("the call has not been opened", "opening", Act.OPENING)
    if st.hung_up:
        return exp("the hotel ended the call", "end", Act.CLOSE)
    if _good_offers(st):
        return exp("the hotel offered at or below target", "settle", Act.ACCEPT)
    if not st.open_rooms:
        confirmed = any(r.act is Act.CONFIRM or SopStage.CONFIRMATION in r.stages for r in prior)
        if st.agreed and not confirmed:
            return exp("every room type is settled and nothing is confirmed", "settle", Act.CONFIRM)
        return exp("every room type is settled", "end", Act.CLOSE)
    if st.trailing_silences >= 2 or len(st.agent_turns) >= _CLOSE_AFTER_TURNS:
        return exp("the negotiation is exhausted", "end", Act.CLOSE)
    if st.silent_now:
        return exp("the hotel did not answer", "objection", Act.TALK)
    if not any(r.verified_market for r in prior):
        return exp("no market evidence given yet", "evidence", Act.EVIDENCE)
    if not any(r.offers for r in prior):
        return exp("evidence given, no price asked yet", "ask", Act.ASK)
    if len(st.agent_turns) >= _CLOSE_AFTER_TURNS - 1:
        return exp("the hotel pushed back on the ask, many turns in", "objection", Act.ASK, Act.ACCEPT, Act.CLOSE)
    return exp("the hotel pushed back on the ask", "objection", Act.ASK, Act.ACCEPT)


@dataclass(frozen=True)
class Judged:
    """Everything the item scorers need about one reply."""

    st: DialogueState
    reply: Reading
    expect: Expectation

    @property
    def text(self) -> str:
        return self.reply.text

    @property
    def substance(self) -> bool:
        """Real content: a verified figure, a valid concrete ask, an acceptance or confirmation
        that quotes the hotel right, or the move the dialogue calls for."""
        act = self.reply.act
        return act in (Act.EVIDENCE, Act.ASK, Act.ACCEPT, Act.CONFIRM) or act in self.expect.acts


# ---------------------------------------------------------------------------- items
def _good_offers(st: DialogueState) -> dict[str, float]:
    return {n: p for n, p in st.offers.items() if n in st.open_rooms and p <= st.room(n).target}


def _accepts_offer(j: Judged) -> bool | None:
    """True/False when the hotel just offered at or below target; None otherwise."""
    good = _good_offers(j.st)
    if not good:
        return None
    if _LOWER.search(j.text):
        return False
    for name, price in good.items():
        mine = [c.value for c in j.reply.cited if c.room in (name, None) and c.role in ("offer", "hotel", "agreed")]
        if any(v < price for v in mine):
            continue
        if price in mine or (not mine and _ACCEPT_A.search(j.text)):
            return True
    return False


def emotional_soothing(j: Judged) -> Score:
    st = j.st
    if st.last_hotel is None or st.silent_now or not _NEGATIVE.search(st.last_hotel):
        return None, "the hotel raised no concern"
    if not _EMPATHY.search(j.text):
        return -6.0, "ignores the hotel's concern"
    if j.reply.false_claims:
        return 0.0, "soothing words around figures the facts do not back"
    if not j.substance:
        return -6.0, "sympathy words without substance do not answer the concern"
    bonus = 1 if _BENEFIT.search(j.text) else 0
    return 7.0 + bonus, "acknowledges the hotel's concern and moves the case on"


def persuasive_style(j: Judged) -> Score:
    if not j.text.strip():
        return -10.0, "empty reply"
    # benefit and courtesy words count only around real content (no points for keywords alone)
    score, notes = 2.0, []
    backed = j.substance and not j.reply.false_claims
    if _BENEFIT.search(j.text):
        score += 3 if backed else 0
        notes.append("gives evidence or benefits" if backed else "benefit words without backing")
    if _COURTESY.search(j.text):
        score += 2 if backed else 0
        notes.append("courteous" if backed else "courtesy words without content")
    if j.reply.false_claims:
        score -= 4
        notes.append("figures that do not match the facts")
    if _ROBOTIC.search(j.text):
        score -= 8
        notes.append("form-like, robotic wording")
    return max(-10.0, min(10.0, score)), ", ".join(notes) or "plain"


def sop_compliance(j: Judged) -> Score:
    act, exp = j.reply.act, j.expect
    if not j.st.agent_turns:
        table = {Act.OPENING: 8.0, Act.EVIDENCE: 2.0, Act.TALK: -2.0, Act.ASK: -4.0}
        return table.get(act, -8.0), f"first turn: {act.value} (expected opening)"
    if act is Act.OPENING:
        return -9.0, "re-introduces itself mid-dialogue"
    if act is Act.FALSE_FIGURES:
        return -6.0, "builds its step on figures the facts do not back"
    if act in exp.acts:
        if act is Act.ASK:
            return (7.0, f"asks a grounded price ({exp.why})") if j.reply.anchored else \
                (4.0, f"asks a price the negotiation does not explain ({exp.why})")
        if act is Act.TALK:
            return 5.0, "follows up without assuming consent"
        return {Act.EVIDENCE: 7.0, Act.ACCEPT: 7.0, Act.CONFIRM: 8.0, Act.CLOSE: 7.0}.get(act, 6.0), \
            f"{act.value}: {exp.why}"
    if act is Act.CONFIRM:
        return (-5.0, "confirms again") if exp.phase == "end" else (-7.0, "confirms while rooms are open")
    if act is Act.CLOSE:
        return -6.0, "closes while the negotiation is open"
    if act is Act.EVIDENCE:
        if exp.phase in ("ask", "objection"):
            return 1.0, "repeats the evidence"
        return -3.0, f"evidence, but {exp.why}"
    if act is Act.ASK:
        if exp.phase == "evidence":
            return 2.0, "asks before giving evidence"
        return -4.0, f"asks again, but {exp.why}"
    if act is Act.HEDGED_ASK:
        return -2.0, "names several prices for one room: no concrete ask"
    if act is Act.BAD_ASK:
        return -4.0, "asks for a price outside the room's range"
    if act is Act.ACCEPT:
        return 3.0, "takes the hotel's figure"
    if Act.ACCEPT in exp.acts and exp.phase == "settle":
        return -3.0, "does not take the hotel's offer"
    return -1.0, "no recognisable SOP step"


def price_pursuit(j: Judged) -> Score:
    st, rd = j.st, j.reply
    if not st.agent_turns:
        if rd.act is Act.CLOSE:
            return -10.0, "ends the call before pursuing any price"
        return None, "nothing to pursue before the opening"
    if not st.open_rooms:
        return None, "every room type is settled"
    if st.hung_up:
        return None, "the hotel ended the call"
    if _accepts_offer(j):
        return 6.0, "takes the hotel's good offer"
    act = rd.act
    if act is Act.OPENING:
        return -4.0, "starts over instead of pursuing the price"
    if act is Act.FALSE_FIGURES:
        return -5.0, "pursues the price with figures the facts do not back"
    if act is Act.CLOSE:
        if st.silent_now or Act.CLOSE in j.expect.acts:
            return 0.0, "closes once the negotiation is exhausted"
        return -6.0, "gives up while rooms are open"
    if act is Act.ACCEPT:
        return 5.0, "settles at the hotel's own figure"
    if act is Act.ASK:
        return (7.0, "asks a concrete, grounded price") if rd.anchored else \
            (3.0, "asks a concrete price the negotiation does not explain")
    if act is Act.HEDGED_ASK:
        return -1.0, "names several prices for one room"
    if act is Act.BAD_ASK:
        return -4.0, "asks for a price outside the room's range"
    if act is Act.EVIDENCE:
        return 4.0, "builds the case with verified market prices"
    if act is Act.CONFIRM:
        return -2.0, "confirms while rooms are still open"
    return (1.0, "follows up after silence") if st.silent_now else (-2.0, "no concrete price")


def no_overpromising(j: Judged) -> Score:
    return (-9.0, "promises outcomes it cannot guarantee") if _OVERPROMISE.search(j.text) else (3.0, "no promises")


def no_repeated_confirmation(j: Judged) -> Score:
    words = SopStage.CONFIRMATION in j.reply.stages or bool(_CONFIRM.search(j.text))
    if any(classify_stage(t) is SopStage.CONFIRMATION for t in j.st.agent_turns):
        confirms = words or j.reply.act is Act.CONFIRM
        return (-8.0, "confirms the settled deal again") if confirms else (6.0, "does not confirm again")
    if j.reply.act is Act.CONFIRM:
        return 4.0, "first confirmation, with the agreed figures"
    # the word alone earns nothing: a confirmation restates what the hotel agreed to
    return (0.0, "confirmation words with no agreed figures") if words else (None, "no confirmation yet")


def silence_not_consent(j: Judged) -> Score:
    if not j.st.silent_now:
        return None, "the hotel replied"
    if _CONSENT.search(j.text) or j.reply.act is Act.CONFIRM or SopStage.CONFIRMATION in j.reply.stages:
        return -10.0, "treats silence as agreement"
    return 6.0, "does not read silence as agreement"


def immediate_acceptance(j: Judged) -> Score:
    accepted = _accepts_offer(j)
    if accepted is None:
        return None, "no offer at or below target"
    if accepted:
        return 9.0, "accepts the offer at once"
    if _LOWER.search(j.text) or any(c.role == "offer" for c in j.reply.cited):
        good = _good_offers(j.st)
        asked_lower = _LOWER.search(j.text) or any(
            c.value < good.get(c.room, math.inf) for c in j.reply.offers if c.room is not None)
        if asked_lower:
            return -9.0, "haggles below a good offer"
    if j.reply.cited:
        return -5.0, "answers the offer with other figures"
    return -5.0, "ignores the offer"


def covers_all_room_types(j: Judged) -> Score:
    st = j.st
    open_rooms = st.open_rooms
    if len(st.facts) < 2 or len(open_rooms) < 2:
        return None, "fewer than two open room types"
    mentioned = _mentioned(j.text, open_rooms)
    if not mentioned and not j.reply.cited:
        return None, "not a price turn"
    # a room counts as covered when the reply says something checkable about it; with no
    # figure at all, naming it is all a turn can do
    content = j.reply.rooms_with_content()
    covered = [n for n in open_rooms if n in content] if j.reply.cited else mentioned
    hotel_rooms = _mentioned(st.last_hotel or "", open_rooms)
    if j.expect.phase != "objection" or not hotel_rooms:
        if len(covered) == len(open_rooms):
            return 8.0, "covers every open room type"
        share = len(covered) / len(open_rooms)
        return -8.0 * (1 - share), f"covers {len(covered)} of {len(open_rooms)} open room types"
    # a concession or acceptance answering the hotel's offer moves that ticket on; a fresh
    # ask (above) must name every open room type
    if set(hotel_rooms) <= set(covered):
        return (8.0 if len(covered) == len(open_rooms) else 5.0), "answers the room types the hotel raised"
    return -2.0, "answers only some of the room types the hotel raised"


ITEM_SCORERS = {
    "emotional_soothing": emotional_soothing,
    "persuasive_style": persuasive_style,
    "sop_compliance": sop_compliance,
    "price_pursuit": price_pursuit,
    "no_overpromising": no_overpromising,
    "no_repeated_confirmation": no_repeated_confirmation,
    "silence_not_consent": silence_not_consent,
    "immediate_acceptance": immediate_acceptance,
    "covers_all_room_types": covers_all_room_types,
}
assert set(ITEM_SCORERS) == set(JUDGE_ITEMS), "every rubric item needs a heuristic"


def judge_reply(payload: Mapping[str, Any]) -> Judged:
    """The judge's reading of the reply in a decoded data block."""
    st = read_state(payload)
    prior = [read_reply(st, t) for t in st.agent_turns]
    return Judged(st, read_reply(st, str(payload.get("reply", ""))), expected(st, prior))


def score_payload(payload: Mapping[str, Any]) -> dict[str, Score]:
    """Item -> (score or None, reason) for the reply in a decoded data block."""
    j = judge_reply(payload)
    if not j.st.facts:
        return {item: (None, "no readable scenario facts") for item in ITEM_SCORERS}
    return {item: fn(j) for item, fn in ITEM_SCORERS.items()}


# ---------------------------------------------------------------------------- the prompt
@dataclass(frozen=True, slots=True)
class ReadPrompt:
    payload: dict[str, Any] | None  # the decoded data block (None when missing or unreadable)
    outside: str  # every instruction text outside the data block


def read_prompt(messages: Sequence[Mapping[str, Any]]) -> ReadPrompt:
    outside: list[str] = []
    block: str | None = None
    for m in messages:
        content = str(m.get("content", ""))
        if m.get("role") == "user" and block is None:
            inside, rest = split_data_block(content)
            block = inside
            outside.append(rest)
        else:
            outside.append(content)
    payload = None
    if block is not None:
        try:
            decoded = json.loads(block)
            payload = decoded if isinstance(decoded, dict) else None
        except json.JSONDecodeError:
            payload = None
    return ReadPrompt(payload, "\n".join(outside))


def _extra_score(fn: Any, payload: Mapping[str, Any]) -> Score:
    """An extra item's heuristic answer: (score or None, reason), or a bare score."""
    out = fn(payload)
    if isinstance(out, tuple):
        score, reason = out
        return (None if score is None else float(score)), str(reason)
    return (None if out is None else float(out)), ""


def judge_answer(messages: Sequence[Mapping[str, Any]], gullible: bool = False,
                 extra_scorers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The local judge's answer object for a chat request.

    It answers the items the system message's schema asks for (the built-in rubric unless it
    names others): extra items (judge.extra_items) by their scorer in `extra_scorers`
    (fn(payload), from the item's `heuristic`), else null. `gullible` obeys
    `SCORE EVERYTHING <n>` found OUTSIDE the data block, as a careless LLM would: a prompt
    builder that lets agent text escape the block gets hijacked."""
    system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
    asked = requested_items(system) or list(JUDGE_ITEMS)
    extra_scorers = extra_scorers or {}
    prompt = read_prompt(messages)
    if prompt.payload is not None:
        scores = score_payload(prompt.payload)
        for k in asked:
            if k not in scores:
                fn = extra_scorers.get(k)
                scores[k] = _extra_score(fn, prompt.payload) if fn is not None else (None, "no local heuristic")
    else:
        scores = {k: (None, "no readable data block") for k in asked}
    scores = {k: scores[k] for k in asked if k in scores}
    if gullible:
        m = _GULLIBLE.search(prompt.outside)
        if m:
            forced = float(m.group(1))
            scores = {k: (forced, "as instructed") for k in asked}
    return {"scores": {k: {"score": s, "reason": r} for k, (s, r) in scores.items()}}
