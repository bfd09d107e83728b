"""The evaluation judge: scores one agent reply in its dialogue context on the rubric items,
with its own heuristics and weights (`eval.judge`), kept apart from the training judge so a
policy cannot win evaluation by fitting the judge it was trained against.

Built in (`eval.judge.base_url: null`): pure and deterministic, in this process. With a
`base_url`, the same rubric is asked of an OpenAI-compatible endpoint through the training
side's `JudgeClient` (its prompt, schema and retries), and only the item scores are kept:
the normalisation and weights stay this module's.

How it differs from the training judge (`reward_actors/judge/heuristics.py`), also printed
in every report (`DIFFERENCES`):
- State: it reads the negotiation off the scenario and the dialogue messages with its own
  parser: hotel prices are attributed to room types by position (a price belongs to the
  room named last before it), acceptances without a price ("ok.") settle the price the
  agent asked just before, hang-ups and goodbyes end the dialogue. Agent asks are read
  with the evaluation's own guardrail parser (`repo_ray.eval.guardrails.asks_in`), shared
  with neither the training rules nor the training judge.
- Scores are graded rather than a few fixed levels: price pursuit grows with how close the
  ask is to the target, room-type coverage with the share of open rooms covered, style with
  verified evidence (the scenario's own competitor prices), courtesy, questions, and drops
  with form-like wording or a reply that repeats the agent's previous turn.
- Applicability differs: emotional soothing only after explicit resistance; silence only
  when the hotel's last message is empty; repeated confirmation counts the agent's earlier
  confirmations and the hotel's "already confirmed".
- Aggregation: a normalised score in [-1, 1] = sum(w_i * s_i) / (10 * sum(|w_i|)) over the
  applicable items (null items do not count), with `eval.judge.weights` (default: all 1)
  instead of the training judge's weighted sum E_judge with `reward.judge_weights`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from repo_ray.config import EvalJudgeConfig
from repo_ray.domain.rubric import JUDGE_ITEMS, JUDGE_SCORE_RANGE
from repo_ray.domain.scenario import Scenario
from repo_ray.domain.sop import SopStage, classify_stage
from repo_ray.errors import UserError
from repo_ray.eval.guardrails import asks_in
from repo_ray.types import Message, Role

DIFFERENCES = (
    "The evaluation judge is a separate implementation from the training judge: it reconstructs the "
    "negotiation state with its own parser (prices attributed to room types by position, bare "
    "acceptances settle the agent's last ask), scores items on graded scales (price pursuit by closeness "
    "of the ask to the target, room coverage by the share of open rooms covered, style by verified "
    "evidence, courtesy and repetition of the agent's previous turn), applies items under its own "
    "conditions, and aggregates with its own weights (eval.judge.weights) into a normalised score in "
    "[-1, 1] over the applicable items, where the training judge sums weighted items into E_judge with "
    "reward.judge_weights."
)

ItemScore = tuple[float | None, str]


class EvalJudgeError(UserError, RuntimeError):
    """The configured evaluation judge endpoint did not answer usable scores."""


@dataclass(frozen=True, slots=True)
class EvalJudgement:
    """The evaluation judge's verdict on one reply: item scores in [-10, 10] (None = not
    applicable), a short reason per item, and the normalised score in [-1, 1]."""

    scores: dict[str, float | None]
    reasons: dict[str, str]
    normalised: float

    def applicable(self) -> dict[str, float]:
        return {k: v for k, v in self.scores.items() if v is not None}


def normalised_score(scores: Mapping[str, float | None], weights: Mapping[str, float]) -> float:
    """sum(w_i * s_i) / (10 * sum(|w_i|)) over items with a score and a non-zero weight; 0 when
    none applies. In [-1, 1] because every s_i is in [-10, 10]."""
    hi = JUDGE_SCORE_RANGE[1]
    num = den = 0.0
    for item, s in scores.items():
        w = weights.get(item, 0.0)
        if s is None or not w:
            continue
        num += w * max(JUDGE_SCORE_RANGE[0], min(hi, s))
        den += abs(w) * hi
    return num / den if den else 0.0


# ---------------------------------------------------------------------------- reading the dialogue
def _rx(*parts: str) -> re.Pattern[str]:
    return re.compile("|".join(parts), re.I)


_PRICE_AT = re.compile(r"(?:¥|￥|CNY\s?|RMB\s?)\s?(\d[\d,]*(?:\.\d+)?)|(\d[\d,]*(?:\.\d+)?)\s?(?:元|块|yuan\b)", re.I)
_SENTENCES = re.compile(r"(?<=[.!?。！？；;])\s*")
# hotel: agreement vs hedged offers (an offer puts a price on the table; agreement settles it)
_AGREE = _rx(r"\bworks?\b", r"\bfine\b", r"\bwe can do\b", r"\bok(ay)?\b", r"\bagreed?\b", r"\bdeal\b", r"\bsure\b",
             r"\byes\b", r"可以", r"^\s*行", r"没问题", r"按.{0,12}来", r"嗯", r"好的")
_HEDGE = _rx(r"\bcould\b", r"n'?t\b", r"\bcannot\b", r"\bbest\b", r"\bonly\b", r"\balone\b", r"\bif\b", r"\bmaybe\b",
             r"不能", r"最多", r"只有", r"单独", r"做到", r"给到", r"您看", r"吗")
# only for good: "absolutely not" from a hostile manager can still move at a better price
_REFUSAL = _rx(r"has to stay", r"stays? as it is", r"can'?t change", r"cannot change", r"won'?t change",
               r"will not change", r"改不了", r"保持现价", r"只能保持", r"不会改")
_ENDED = _rx(r"\bgoodbye\b", r"\bbye\b", r"hanging up", r"don'?t call", r"再见", r"挂了", r"别再打", r"回头聊")
# pushback, not confusion: "Sorry, what do you mean?" asks for clarity and is not resistance
_RESIST = _rx(r"n'?t\b", r"\bnot\b", r"\bno\b", r"\bwhy\b", r"\bbusy\b", r"\bquick\b", r"already fair",
              r"\bproblem\b", r"\bspeech\b", r"\bquality\b", r"\bseason\b", r"\bcare\b", r"\bstill think\b",
              r"best we can",
              r"不能", r"不行", r"不关", r"不明白", r"不一样", r"不太", r"不动", r"别", r"为什么",
              r"忙", r"快点", r"合理",
              r"品质", r"定好", r"说过")
_CONFIRMED = _rx(r"\bconfirmed\b", r"already confirmed", r"确认", r"已经确认")
# agent
_EMPATHY = _rx(r"\bI (completely |totally |fully |do )?understand\b", r"\bI hear you\b", r"\bI see\b",
               r"\bfair point\b",
               r"\bappreciate\b", r"\bI know\b", r"\bmakes sense\b", r"\bno problem\b", r"\bsorry\b", r"\bthanks?\b",
               r"\bthank you\b", r"理解", r"明白", r"感谢", r"谢谢", r"抱歉", r"没关系", r"辛苦")
_PUSHY = _rx(r"\byou (must|have to|need to)\b", r"\byou'?re wrong\b", r"\bthat'?s wrong\b", r"\bbe reasonable\b",
             r"你必须", r"您必须", r"你错了", r"必须")
_BENEFIT = _rx(r"\bbookings?\b", r"\bguests?\b", r"travell?ers\b", r"\bvisibility\b", r"\branking\b", r"\bclicks?\b",
               r"\bcompetitive\b", r"\bvalue\b", r"\bmargin\b", r"\bmarket\b", r"\bcompetitors?\b", r"\bnearby\b",
               r"订单", r"客人", r"曝光", r"排名", r"点击", r"竞争力", r"划算", r"利润", r"市场", r"竞品", r"周边")
_COURTEOUS = _rx(r"\bplease\b", r"\bthank", r"\bappreciate\b", r"\bwould you\b", r"\bcould you\b", r"\bhappy to\b",
                 r"\bglad\b", r"您", r"请", r"谢谢", r"感谢", r"麻烦")
_FORM_LIKE = _rx(r"^\s*(request|notice|note|action required|reply|required|instruction|attention|subject)\s*:",
                 r"\byes or no\b", r"\breply (y|n|yes|no)\b", r"please reply with\b",
                 r"^\s*\[[A-Z_]+\]", r"^\s*(请求|通知|注意|要求)：", r"是或否", r"请回复")
_SHOUTING = re.compile(r"^[^a-z\u4e00-\u9fff]*[A-Z]{4,}[^a-z]*$")  # case matters: no re.I
_PROMISES = _rx(r"\bguarantee", r"\bdefinitely\b", r"\bcertainly (will|be)\b", r"\bI promise\b", r"\bfor sure\b",
                r"100\s?%", r"\bwill (double|triple)\b", r"\branked? (first|#1|number one)\b", r"\bnever fail",
                r"\bno risk\b", r"保证", r"一定(会|翻倍)", r"肯定会", r"绝对", r"百分之百", r"翻倍", r"排名第一")
_CLAIMS_CONSENT = _rx(r"\bI'?ll (set|update|go ahead|put|change|lock|apply|submit)",
                      r"\bwe'?ll (set|update|go ahead|apply)", r"\bsince you (didn'?t|haven'?t|did not)",
                      r"\bno objection", r"\bdidn'?t object", r"\bas agreed\b",
                      r"\btake (that|your silence|it) as\b", r"\bsilence\b", r"\bconsider it (done|agreed|settled)\b",
                      r"\bagreed\b", r"没有反对", r"既然您没", r"默认", r"那我就", r"视为", r"就这么定", r"更新了",
                      r"当您同意", r"您同意了")
_LOWER_ASK = _rx(r"\blower\b", r"\bfurther\b", r"a bit more", r"\bgo down\b", r"\breduce\b", r"\bcheaper\b",
                 r"再低", r"更低", r"低一点", r"再降", r"降一点", r"再便宜")
_TAKES = _rx(r"\bworks\b", r"\bdeal\b", r"\bagreed?\b", r"\baccept", r"\bperfect\b", r"\bgreat\b", r"\bwonderful\b",
             r"\bit is\b", r"\bgo with\b", r"\bthank you\b", r"没问题", r"可以", r"就按", r"太好了", r"好的")
_WORD = re.compile(r"[a-z0-9]+|[\u4e00-\u9fff]")
_CONFIRMING = _rx(r"\b(to|just to|let me|I'?d like to) confirm\b", r"\bconfirming\b",
                  r"确认一下", r"跟您确认", r"再确认")


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return set(zip(words, words[1:], words[2:]))


def _prices_with_pos(text: str) -> list[tuple[int, float]]:
    out = []
    for m in _PRICE_AT.finditer(text):
        raw = (m.group(1) or m.group(2)).replace(",", "")
        try:
            out.append((m.start(), float(raw)))
        except ValueError:
            continue
    return out


def room_prices(text: str, scenario: Scenario) -> list[tuple[str, float]]:
    """(room, price) pairs of a message: each currency-marked price belongs to the room named
    last before it, else the first named after it, else the only room, else the room whose
    current price is closest."""
    low = text.lower()
    mentions = sorted((m.start(), r.name) for r in scenario.room_types
                      for m in re.finditer(re.escape(r.name.lower()), low))
    out = []
    for pos, price in _prices_with_pos(text):
        before = [n for p, n in mentions if p < pos]
        after = [n for p, n in mentions if p > pos]
        if before:
            room = before[-1]
        elif after:
            room = after[0]
        elif len(scenario.room_types) == 1:
            room = scenario.room_types[0].name
        else:
            room = min(scenario.room_types, key=lambda r: abs(r.current_price - price)).name
        out.append((room, price))
    return out


def _mentioned_rooms(text: str, scenario: Scenario) -> list[str]:
    low = text.lower()
    return [r.name for r in scenario.room_types if r.name.lower() in low]


@dataclass
class NegotiationView:
    """The negotiation just before the reply, as the evaluation judge reads it."""

    scenario: Scenario
    agent_turns: list[str]
    hotel_turns: list[str]  # "" is silence
    last_hotel: str | None = None  # the message the reply answers; None when the reply opens the dialogue
    agreed: dict[str, float] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    on_table: dict[str, float] = field(default_factory=dict)  # prices the hotel's last message put forward
    ended: bool = False
    hotel_confirmed: bool = False

    @property
    def silent_now(self) -> bool:
        return self.last_hotel is not None and not self.last_hotel.strip()

    @property
    def open_rooms(self) -> list[str]:
        return [r.name for r in self.scenario.room_types if r.name not in self.agreed and r.name not in self.refused]

    @property
    def resisted(self) -> bool:
        last = self.last_hotel
        return bool(last and last.strip() and _RESIST.search(last))

    @property
    def confirmations(self) -> int:
        return sum(classify_stage(t) is SopStage.CONFIRMATION for t in self.agent_turns)

    @property
    def evidence_given(self) -> bool:
        competitor = {p for r in self.scenario.room_types for p in r.competitor_prices}
        return any(classify_stage(t) is SopStage.EVIDENCE or any(p in competitor for _, p in _prices_with_pos(t))
                   for t in self.agent_turns)

    @property
    def silences_in_a_row(self) -> int:
        n = 0
        for t in reversed(self.hotel_turns):
            if t.strip():
                break
            n += 1
        return n


def read_negotiation(scenario: Scenario, history: Sequence[Message]) -> NegotiationView:
    msgs = [m for m in history if m.role is not Role.SYSTEM]
    view = NegotiationView(scenario, [m.text for m in msgs if m.role is Role.AGENT],
                           [m.text for m in msgs if m.role is Role.HOTEL],
                           msgs[-1].text if msgs and msgs[-1].role is Role.HOTEL else None)
    last_ask: dict[str, float] = {}
    for i, m in enumerate(msgs):
        if m.role is Role.AGENT:
            last_ask = {}
            for a in asks_in(m.text, scenario):  # asks only: quoted competitor prices are not asks
                last_ask.setdefault(a.room, a.price)
            continue
        is_last = i == len(msgs) - 1
        text = m.text.strip()
        if not text:
            continue
        view.ended |= bool(_ENDED.search(text))
        view.hotel_confirmed |= bool(_CONFIRMED.search(text)) and not re.search(r"confirm what|确认什么", text, re.I)
        settled_any = False
        for sentence in (s for s in _SENTENCES.split(text) if s.strip()):
            pairs = room_prices(sentence, scenario)
            rooms = _mentioned_rooms(sentence, scenario)
            if not pairs:
                if rooms and _REFUSAL.search(sentence):
                    view.refused.update(r for r in rooms if r not in view.agreed)
                elif (not rooms and last_ask and _AGREE.search(sentence) and not _HEDGE.search(sentence)
                      and "?" not in text and "？" not in text and len(_WORD.findall(text.lower())) <= 4):
                    # a bare "ok." settles what the agent just asked
                    for r, p in last_ask.items():
                        view.agreed.setdefault(r, p)
                    settled_any = True
                continue
            for room, price in pairs:
                if room in view.agreed:
                    continue
                if _AGREE.search(sentence) and not _HEDGE.search(sentence):
                    view.agreed[room] = price
                    settled_any = True
                elif is_last:
                    view.on_table[room] = price
        if settled_any:
            view.on_table = {r: p for r, p in view.on_table.items() if r not in view.agreed}
    return view


# ---------------------------------------------------------------------------- the items
@dataclass(frozen=True)
class _Reply:
    text: str
    stage: SopStage
    asks: dict[str, float]  # room -> price the reply asks for (RF rules' parser)
    prices: list[float]  # every currency-marked price in it


def _good_offers(v: NegotiationView) -> dict[str, float]:
    return {r: p for r, p in v.on_table.items()
            if r in v.open_rooms and p <= v.scenario.room(r).target_price}


def _accepts(v: NegotiationView, reply: _Reply) -> bool | None:
    """True/False when the hotel's last message offered at or below target; None otherwise."""
    good = _good_offers(v)
    if not good:
        return None
    if _LOWER_ASK.search(reply.text):
        return False
    for room, price in good.items():
        asked = reply.asks.get(room)
        if asked is not None and asked < price:
            return False
        if price in reply.prices or _TAKES.search(reply.text):
            return True
    return False


def _emotional_soothing(v: NegotiationView, r: _Reply) -> ItemScore:
    if not v.resisted:
        return None, "no resistance to answer"
    if _PUSHY.search(r.text):
        return -8.0, "argues or pressures after resistance"
    first = _SENTENCES.split(r.text.strip())[0] if r.text.strip() else ""
    if _EMPATHY.search(first):
        return (9.0 if _BENEFIT.search(r.text) else 7.0), "acknowledges the concern first"
    if _EMPATHY.search(r.text):
        return 4.0, "acknowledges the concern, late"
    return -4.0, "answers resistance without acknowledging it"


def _persuasive_style(v: NegotiationView, r: _Reply) -> ItemScore:
    text = r.text.strip()
    if not text:
        return -10.0, "empty reply"
    score, notes = 0.0, []
    competitor = {p for room in v.scenario.room_types for p in room.competitor_prices}
    if any(p in competitor for p in r.prices):
        score += 3
        notes.append("verified market evidence")
    if _BENEFIT.search(text):
        score += 2
        notes.append("speaks to the hotel's benefit")
    if _COURTEOUS.search(text):
        score += 2
        notes.append("courteous")
    if "?" in text or "？" in text:
        score += 1
        notes.append("invites an answer")
    if _FORM_LIKE.search(text) or _SHOUTING.search(text):  # no courtesy word or quoted price makes a form human
        score = min(score - 9, -6.0)
        notes.append("form-like wording")
    if v.agent_turns:
        now, before = _trigrams(text), _trigrams(v.agent_turns[-1])
        if len(now) >= 3 and len(now & before) / len(now) > 0.5:
            score -= 4
            notes.append("repeats its previous turn")
    return max(-10.0, min(10.0, score)), ", ".join(notes) or "plain"


def _sop_compliance(v: NegotiationView, r: _Reply) -> ItemScore:
    stage = r.stage
    if not v.agent_turns:
        return {SopStage.OPENING: (8.0, "opens the call"), SopStage.EVIDENCE: (3.0, "starts with evidence")}.get(
            stage, (-6.0, f"first turn is {stage.value}, not an opening"))
    if stage is SopStage.OPENING:
        return -8.0, "introduces itself again mid-dialogue"
    if v.ended:
        if stage is SopStage.CLOSE:
            return 8.0, "closes after the hotel ended"
        return -4.0, "talks on after the hotel ended"
    open_rooms = v.open_rooms
    if stage is SopStage.CONFIRMATION:
        if v.confirmations or v.hotel_confirmed:
            return -6.0, "confirms a second time"
        return (8.0, "confirms what was agreed") if v.agreed else (-8.0, "confirms with nothing agreed")
    if stage is SopStage.CLOSE:
        if not open_rooms or v.silences_in_a_row >= 2 or len(v.agent_turns) >= 6:
            return 8.0, "closes when the negotiation is done"
        return -5.0, "closes while room types are open and the hotel engages"
    if not open_rooms:
        if v.agreed and not (v.confirmations or v.hotel_confirmed):
            return -3.0, "every room settled: a confirmation is due"
        return -3.0, "every room settled: a close is due"
    if _accepts(v, r):
        return 7.0, "takes the hotel's good offer"
    if stage is SopStage.EVIDENCE:
        return (7.0, "brings market evidence") if not v.evidence_given else (2.0, "repeats the evidence")
    if stage is SopStage.ASK:
        return (7.0, "asks after the evidence") if v.evidence_given else (3.0, "asks before any evidence")
    if stage is SopStage.OBJECTION:
        if v.resisted or v.silent_now:
            return 7.0, "handles the hotel's pushback"
        return 2.0, "objection handling unprompted"
    if r.asks:
        return 3.0, "asks a price"
    if v.silent_now and ("?" in r.text or "？" in r.text):
        return 4.0, "follows up after silence"
    return -3.0, "no recognisable SOP step"


def _price_pursuit(v: NegotiationView, r: _Reply) -> ItemScore:
    if not v.agent_turns:
        if r.stage is SopStage.CLOSE:
            return -8.0, "ends the call before any price is pursued"
        return None, "the opening pursues nothing yet"
    if not v.open_rooms or v.ended:
        return None, "nothing left to pursue"
    accepted = _accepts(v, r)
    if accepted:
        return 8.0, "takes a price at or below target"
    asks = {room: p for room, p in r.asks.items() if room in v.open_rooms}
    if asks:
        best = 0.0
        for room, p in asks.items():
            rt = v.scenario.room(room)
            if not rt.floor_price <= p < rt.current_price:
                return -6.0, f"asks {p:g} for the {room}, outside [floor, current)"
            span = rt.current_price - rt.target_price
            closeness = 1.0 if p <= rt.target_price else max(0.0, 1 - (p - rt.target_price) / span) if span else 1.0
            best = max(best, 3.0 + 6.0 * closeness)
        return best, "asks a concrete price"
    if r.stage is SopStage.EVIDENCE and r.prices:
        return 3.0, "builds the case with prices"
    if r.stage is SopStage.CLOSE:
        if v.silences_in_a_row >= 2 or len(v.agent_turns) >= 6:
            return 0.0, "closes a stalled or long negotiation"
        return -6.0, "gives up with rooms open"
    if r.stage is SopStage.OPENING:
        return -5.0, "starts over instead of pursuing"
    if v.silent_now:
        return 1.0, "follows up after silence"
    return -3.0, "no concrete price"


def _no_overpromising(v: NegotiationView, r: _Reply) -> ItemScore:
    hits = len(_PROMISES.findall(r.text))
    if hits == 0:
        return 5.0, "promises nothing"
    return (-7.0 if hits == 1 else -10.0), f"{hits} over-promise(s)"


def _no_repeated_confirmation(v: NegotiationView, r: _Reply) -> ItemScore:
    confirms = r.stage is SopStage.CONFIRMATION or bool(_CONFIRMING.search(r.text))
    before = v.confirmations + (1 if v.hotel_confirmed and not v.confirmations else 0)
    if before:
        if confirms:
            return (-9.0 if before == 1 else -10.0), "confirms again"
        return 5.0, "leaves the confirmed deal alone"
    if confirms:
        return (5.0, "confirms once") if v.agreed else (None, "premature confirmation is an SOP matter")
    return None, "no confirmation yet"


def _silence_not_consent(v: NegotiationView, r: _Reply) -> ItemScore:
    if not v.silent_now:
        return None, "the hotel answered"
    if _CLAIMS_CONSENT.search(r.text) or r.stage is SopStage.CONFIRMATION:
        return -10.0, "reads silence as agreement"
    if "?" in r.text or "？" in r.text or r.stage in (SopStage.OBJECTION, SopStage.CLOSE):
        return 7.0, "follows up without assuming agreement"
    return 4.0, "does not assume agreement"


def _immediate_acceptance(v: NegotiationView, r: _Reply) -> ItemScore:
    accepted = _accepts(v, r)
    if accepted is None:
        return None, "no offer at or below target on the table"
    if accepted:
        return 10.0, "accepts at once"
    if _LOWER_ASK.search(r.text) or r.asks:
        return -10.0, "haggles below a good offer"
    return -6.0, "lets the good offer pass"


def _covers_all_room_types(v: NegotiationView, r: _Reply) -> ItemScore:
    open_rooms = v.open_rooms
    if len(v.scenario.room_types) < 2 or len(open_rooms) < 2:
        return None, "fewer than two open room types"
    covered = set(_mentioned_rooms(r.text, v.scenario)) | set(r.asks)
    covered &= set(open_rooms)
    if not covered and not r.prices:
        return None, "not a price turn"
    raised = set(v.on_table) & set(open_rooms)
    if raised & covered and r.stage not in (SopStage.ASK, SopStage.EVIDENCE):
        # answering the hotel's offers moves those tickets on; a fresh ask must name every open room
        if covered >= set(open_rooms):
            return 8.0, "covers every open room type"
        return (4.0, "answers the room types the hotel raised") if raised <= covered else \
            (0.0, "answers some of the room types the hotel raised")
    frac = len(covered) / len(open_rooms)
    if frac == 1.0:
        return 8.0, "covers every open room type"
    return -2.0 - 8.0 * (1 - frac), f"covers {len(covered)} of {len(open_rooms)} open room types"


ITEMS = {
    "emotional_soothing": _emotional_soothing,
    "persuasive_style": _persuasive_style,
    "sop_compliance": _sop_compliance,
    "price_pursuit": _price_pursuit,
    "no_overpromising": _no_overpromising,
    "no_repeated_confirmation": _no_repeated_confirmation,
    "silence_not_consent": _silence_not_consent,
    "immediate_acceptance": _immediate_acceptance,
    "covers_all_room_types": _covers_all_room_types,
}
if set(ITEMS) != set(JUDGE_ITEMS):
    raise RuntimeError(f"evaluation judge items out of step with the rubric: {sorted(set(ITEMS) ^ set(JUDGE_ITEMS))}")


def judge_items(scenario: Scenario, history: Sequence[Message], response: str) -> dict[str, ItemScore]:
    """Item -> (score in [-10, 10] or None, reason) of the built-in evaluation judge."""
    view = read_negotiation(scenario, history)
    asks: dict[str, float] = {}
    for a in asks_in(response, scenario):
        asks.setdefault(a.room, a.price)
    reply = _Reply(response, classify_stage(response), asks, [p for _, p in _prices_with_pos(response)])
    return {item: fn(view, reply) for item, fn in ITEMS.items()}


# ---------------------------------------------------------------------------- the judge
@dataclass(frozen=True, slots=True)
class JudgeRequest:
    """One reply to grade: its scenario, the dialogue before it, the reply."""

    scenario: Scenario
    history: tuple[Message, ...]
    response: str


class EvalJudge:
    """The evaluation judge of `eval.judge`: built-in (base_url null) or an OpenAI-compatible endpoint."""

    def __init__(self, cfg: EvalJudgeConfig, concurrency: int = 8, transport: Any = None) -> None:
        self.cfg = cfg
        self.weights = {k: float(cfg.weights.get(k, 0.0)) for k in JUDGE_ITEMS}
        self.concurrency = concurrency
        self._transport = transport  # an httpx transport for the endpoint (tests); None: the network

    @property
    def kind(self) -> str:
        return "builtin-heuristic" if self.cfg.base_url is None else f"endpoint {self.cfg.base_url} ({self.cfg.model})"

    def judgement(self, scores: Mapping[str, float | None], reasons: Mapping[str, str]) -> EvalJudgement:
        return EvalJudgement(dict(scores), dict(reasons), normalised_score(scores, self.weights))

    def score(self, scenario: Scenario, history: Sequence[Message], response: str) -> EvalJudgement:
        """One reply with the built-in judge (whatever base_url says: the in-process scorer)."""
        items = judge_items(scenario, history, response)
        return self.judgement({k: s for k, (s, _) in items.items()}, {k: why for k, (_, why) in items.items()})

    def score_many(self, requests: Sequence[JudgeRequest]) -> list[EvalJudgement]:
        """Every request, in order: in-process, or through the endpoint when base_url is set."""
        if self.cfg.base_url is None:
            return [self.score(q.scenario, q.history, q.response) for q in requests]
        return asyncio.run(self._score_remote(list(requests)))

    async def _score_remote(self, requests: list[JudgeRequest]) -> list[EvalJudgement]:
        from repo_ray.config import JudgeConfig
        from reward_actors.judge.client import JudgeClient
        from reward_actors.judge.prompt import JudgeContext

        cfg = JudgeConfig(base_url=self.cfg.base_url, model=self.cfg.model, api_key_env=self.cfg.api_key_env,
                          rubric_version=self.cfg.rubric_version)
        gate = asyncio.Semaphore(self.concurrency)
        async with JudgeClient(cfg, self.weights, deadline_s=cfg.timeout_s * (cfg.max_retries + 1),
                               transport=self._transport) as client:
            async def one(q: JudgeRequest):
                async with gate:
                    ctx = JudgeContext(q.scenario, q.history, q.response, classify_stage(q.response).value)
                    return await client.score(ctx)

            results = await asyncio.gather(*(one(q) for q in requests))
        out, failed = [], [r for r in results if not r.ok]
        if failed:
            first = failed[0]
            raise EvalJudgeError(f"eval.judge.base_url {self.cfg.base_url}: {len(failed)} of {len(results)} replies "
                                 f"not scored (first: {first.status.value}: {first.detail[:120]})")
        for r in results:
            out.append(self.judgement(r.verdict.scores, r.verdict.reasons))  # ok: the client's typed verdict
        return out
