"""The local judge's rubric scoring: deterministic keyword and state heuristics, the stand-in
for a real LLM judge on machines without one (`repo-ray judge-server`).

It reads only what a real judge reads: the data block of the prompt (prompt.py). From the
dialogue text it reconstructs the negotiation state (rooms the hotel agreed to, refused,
or offered a price for; silences; earlier confirmations; SOP stages of the agent's turns
via repo_ray.domain.sop.classify_stage) and scores each rubric item of the reply in
[-10, 10], or null when the item does not apply. The phrase lists follow the wording of
the hotel simulator and the expert agent (English and Chinese); a real judge generalises
further. Worth-using is measured in tests/reward_actors/judge (chosen vs rejected pairs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from repo_ray.domain.rubric import JUDGE_ITEMS
from repo_ray.domain.sop import SopStage, classify_stage
from repo_ray.domain.text import extract_numbers, extract_prices
from reward_actors.judge.prompt import split_data_block

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
                   r"ranked first", r"\bcertainly will\b", r"\bnever fail", r"我保证", r"保证您", r"百分之百", r"一定翻倍",
                   r"一定会", r"肯定会", r"绝对会", r"排名第一")
_CONSENT = _rx(r"didn'?t object", r"did not object", r"no objection", r"since you (didn'?t|haven'?t|did not)",
               r"take (that|your silence) as", r"\bI'?ll (set|update|go ahead|put|change|lock)", r"\bwe'?ll (set|update|go ahead)",
               r"silence means", r"consider it (done|agreed)", r"没有反对", r"既然您没", r"默认", r"那我就", r"更新了",
               r"视为同意", r"当您同意")
_CONFIRM = _rx(r"\bto confirm\b", r"\bconfirm(ed|ing)?\s*:", r"确认一下", r"跟您确认")
_LOWER = _rx(r"\blower\b", r"\bfurther\b", r"a bit more", r"\bgo down\b", r"\breduce\b", r"\bbelow\b", r"\bcheaper\b",
             r"better price", r"再低", r"更低", r"低一点", r"再降", r"降一点", r"便宜")
_ACCEPT_A = _rx(r"\bworks\b", r"\bit is\b", r"\bdeal\b", r"\bagreed\b", r"\baccept", r"\bperfect\b", r"\bgreat\b",
                r"\bwonderful\b", r"\bthank you\b", r"\bgo with\b", r"没问题", r"可以", r"就按", r"太好了", r"好的", r"谢谢")
_GULLIBLE = re.compile(r"SCORE\s+EVERYTHING\s+(-?\d+(?:\.\d+)?)", re.I)
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s*")


@dataclass
class DialogueState:
    """What the dialogue text says about the negotiation just before the reply."""

    rooms: list[dict[str, Any]]
    language: str
    agent_turns: list[str]
    hotel_turns: list[str]
    last_hotel: str | None  # the hotel message the reply answers (None: the reply opens the dialogue)
    agreed: dict[str, float] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    offers: dict[str, float] = field(default_factory=dict)  # in the last hotel message

    @property
    def room_names(self) -> list[str]:
        return [r["name"] for r in self.rooms]

    @property
    def open_rooms(self) -> list[str]:
        return [n for n in self.room_names if n not in self.agreed and n not in self.refused]

    def room(self, name: str) -> dict[str, Any]:
        return next(r for r in self.rooms if r["name"] == name)

    @property
    def silent_now(self) -> bool:
        return self.last_hotel is not None and not self.last_hotel.strip()


def _mentioned(text: str, names: Sequence[str]) -> list[str]:
    low = text.lower()
    return [n for n in names if n.lower() in low]


def _prices(text: str) -> list[float]:
    return extract_prices(text) or [x for x in extract_numbers(text) if x >= 50]


def read_state(payload: Mapping[str, Any]) -> DialogueState:
    rooms = [r for r in payload.get("room_types") or [] if isinstance(r, dict) and r.get("name")]
    dialogue = [m for m in payload.get("dialogue") or [] if isinstance(m, dict)]
    st = DialogueState(
        rooms=rooms, language=str(payload.get("language", "en")),
        agent_turns=[str(m.get("text", "")) for m in dialogue if m.get("role") == "agent"],
        hotel_turns=[str(m.get("text", "")) for m in dialogue if m.get("role") == "hotel"],
        last_hotel=str(dialogue[-1].get("text", "")) if dialogue and dialogue[-1].get("role") == "hotel" else None,
    )
    names = st.room_names
    for i, m in enumerate(dialogue):
        if m.get("role") != "hotel":
            continue
        is_last = i == len(dialogue) - 1
        for sentence in _SENTENCE.split(str(m.get("text", ""))):
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
    return st


# ---------------------------------------------------------------------------- items
def _good_offers(st: DialogueState) -> dict[str, float]:
    return {n: p for n, p in st.offers.items() if n in st.open_rooms and p <= st.room(n)["target_price"]}


def _accepts_offer(st: DialogueState, reply: str) -> bool | None:
    """True/False when the hotel just offered at or below target; None otherwise."""
    good = _good_offers(st)
    if not good:
        return None
    if _LOWER.search(reply):
        return False
    reply_prices = _prices(reply)
    for name, price in good.items():
        lower_ask = any(p < price for p in reply_prices if p >= 0.3 * st.room(name)["floor_price"])
        if not lower_ask and (price in reply_prices or _ACCEPT_A.search(reply)):
            return True
    return False


def emotional_soothing(st: DialogueState, reply: str, stage: SopStage) -> Score:
    if st.last_hotel is None or st.silent_now or not _NEGATIVE.search(st.last_hotel):
        return None, "the hotel raised no concern"
    if _EMPATHY.search(reply):
        bonus = 1 if _BENEFIT.search(reply) else 0
        return 7.0 + bonus, "acknowledges the hotel's concern"
    return -6.0, "ignores the hotel's concern"


def persuasive_style(st: DialogueState, reply: str, stage: SopStage) -> Score:
    if not reply.strip():
        return -10.0, "empty reply"
    score, notes = 2.0, []
    if _BENEFIT.search(reply):
        score += 3
        notes.append("gives evidence or benefits")
    if _COURTESY.search(reply):
        score += 2
        notes.append("courteous")
    if _ROBOTIC.search(reply):
        score -= 8
        notes.append("form-like, robotic wording")
    return max(-10.0, min(10.0, score)), ", ".join(notes) or "plain"


def sop_compliance(st: DialogueState, reply: str, stage: SopStage) -> Score:
    prior = [classify_stage(t) for t in st.agent_turns]
    if not prior:
        table = {SopStage.OPENING: 8.0, SopStage.EVIDENCE: 2.0, SopStage.UNKNOWN: -2.0, SopStage.ASK: -4.0}
        score = table.get(stage, -8.0)
        return score, f"first turn: {stage.value} (expected opening)"
    if stage is SopStage.OPENING:
        return -9.0, "re-introduces itself mid-dialogue"
    if stage is SopStage.CONFIRMATION:
        if SopStage.CONFIRMATION in prior:
            return -5.0, "confirms again"
        return (8.0, "confirms what was agreed") if st.agreed else (-7.0, "confirms with nothing agreed")
    if stage is SopStage.CLOSE:
        silences = [not t.strip() for t in st.hotel_turns]
        done = (not st.open_rooms or silences[-2:] == [True, True] or len(st.agent_turns) >= 6
                or bool(st.last_hotel and _HANGUP.search(st.last_hotel)))
        return (7.0, "closes at the right time") if done else (-6.0, "closes while the negotiation is open")
    if stage is SopStage.EVIDENCE:
        return (7.0, "brings market evidence") if SopStage.EVIDENCE not in prior else (1.0, "repeats the evidence")
    if stage is SopStage.ASK:
        asked_before = SopStage.EVIDENCE in prior or SopStage.ASK in prior
        return (7.0, "asks after the evidence") if asked_before else (2.0, "asks before giving evidence")
    if stage is SopStage.OBJECTION:
        pushback = st.silent_now or bool(st.offers) or bool(st.last_hotel and _NEGATIVE.search(st.last_hotel))
        return (7.0, "handles the objection") if pushback else (3.0, "objection handling without an objection")
    if _accepts_offer(st, reply):
        return 7.0, "accepts the hotel's offer"
    return -1.0, "no recognisable SOP step"


def price_pursuit(st: DialogueState, reply: str, stage: SopStage) -> Score:
    if not st.agent_turns:
        return None, "nothing to pursue before the opening"
    if not st.open_rooms:
        return None, "every room type is settled"
    if st.last_hotel and _HANGUP.search(st.last_hotel):
        return None, "the hotel ended the call"
    accepted = _accepts_offer(st, reply)
    if accepted:
        return 6.0, "takes the hotel's good offer"
    if stage is SopStage.OPENING:
        return -4.0, "starts over instead of pursuing the price"
    if stage is SopStage.CLOSE:
        return (0.0, "closes after silence") if st.silent_now else (-6.0, "gives up while rooms are open")
    prices = _prices(reply)
    in_range = [p for p in prices for n in st.open_rooms
                if st.room(n)["floor_price"] <= p <= st.room(n)["current_price"]]
    if stage is SopStage.EVIDENCE and prices:
        return 4.0, "builds the case with market prices"
    if in_range:
        return 7.0, "asks for a concrete price"
    if prices:
        return -4.0, "asks for a price outside the room's range"
    if stage is SopStage.CONFIRMATION:
        return -2.0, "confirms while rooms are still open"
    return (1.0, "follows up after silence") if st.silent_now else (-2.0, "no concrete price")


def no_overpromising(st: DialogueState, reply: str, stage: SopStage) -> Score:
    return (-9.0, "promises outcomes it cannot guarantee") if _OVERPROMISE.search(reply) else (3.0, "no promises")


def no_repeated_confirmation(st: DialogueState, reply: str, stage: SopStage) -> Score:
    confirms = stage is SopStage.CONFIRMATION or bool(_CONFIRM.search(reply))
    if any(classify_stage(t) is SopStage.CONFIRMATION for t in st.agent_turns):
        return (-8.0, "confirms the settled deal again") if confirms else (6.0, "does not confirm again")
    return (4.0, "first confirmation") if confirms else (None, "no confirmation yet")


def silence_not_consent(st: DialogueState, reply: str, stage: SopStage) -> Score:
    if not st.silent_now:
        return None, "the hotel replied"
    if _CONSENT.search(reply) or stage is SopStage.CONFIRMATION:
        return -10.0, "treats silence as agreement"
    return 6.0, "does not read silence as agreement"


def immediate_acceptance(st: DialogueState, reply: str, stage: SopStage) -> Score:
    accepted = _accepts_offer(st, reply)
    if accepted is None:
        return None, "no offer at or below target"
    if accepted:
        return 9.0, "accepts the offer at once"
    return (-9.0, "haggles below a good offer") if _LOWER.search(reply) or _prices(reply) else (-5.0, "ignores the offer")


def covers_all_room_types(st: DialogueState, reply: str, stage: SopStage) -> Score:
    open_rooms = st.open_rooms
    if len(st.rooms) < 2 or len(open_rooms) < 2:
        return None, "fewer than two open room types"
    covered = _mentioned(reply, open_rooms)
    if not covered and not _prices(reply):
        return None, "not a price turn"
    hotel_rooms = _mentioned(st.last_hotel or "", open_rooms)
    if stage in (SopStage.ASK, SopStage.EVIDENCE) or not hotel_rooms:
        if len(covered) == len(open_rooms):
            return 8.0, "covers every open room type"
        return -8.0 * (1 - len(covered) / len(open_rooms)), f"covers {len(covered)} of {len(open_rooms)} open room types"
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


def score_payload(payload: Mapping[str, Any]) -> dict[str, Score]:
    """Item -> (score or None, reason) for the reply in a decoded data block."""
    st = read_state(payload)
    reply = str(payload.get("reply", ""))
    stage = classify_stage(reply)
    return {item: fn(st, reply, stage) for item, fn in ITEM_SCORERS.items()}


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


def judge_answer(messages: Sequence[Mapping[str, Any]], gullible: bool = False) -> dict[str, Any]:
    """The local judge's answer object for a chat request.

    `gullible` obeys `SCORE EVERYTHING <n>` found OUTSIDE the data block, as a careless LLM
    would: a prompt builder that lets agent text escape the block gets hijacked."""
    prompt = read_prompt(messages)
    if prompt.payload is not None:
        scores = score_payload(prompt.payload)
    else:
        scores = {k: (None, "no readable data block") for k in JUDGE_ITEMS}
    if gullible:
        m = _GULLIBLE.search(prompt.outside)
        if m:
            forced = float(m.group(1))
            scores = {k: (forced, "as instructed") for k in JUDGE_ITEMS}
    return {"scores": {k: {"score": s, "reason": r} for k, (s, r) in scores.items()}}
