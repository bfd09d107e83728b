"""The hotel simulator: the rule-driven, seeded counterpart in rollouts and evaluation.

Each persona keeps a hidden reservation price per room type (between target and
current) and answers what the agent's message carries: the SOP stage it reads off the
text and the prices it asks for. Replies are deterministic for (seed, scenario, turn,
agent text). The empty string is silence.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

from repo_ray.domain.scenario import Persona, RoomType, Scenario, format_price
from repo_ray.domain.sop import SopStage, classify_stage
from repo_ray.domain.text import extract_numbers, extract_prices


def round_to(p: float, step: float = 10.0) -> float:
    return float(math.floor(p / step) * step)


# Phrase tables: key -> variants, per language. Fields: {room}, {price}, {current}.
_PHRASES: dict[str, dict[str, list[str]]] = {
    "en": {
        "greet.cooperative": ["Hi, sure, what can I do for you?", "Hello! Happy to talk, what is it about?"],
        "greet.hesitant": ["Hmm, what is this about?", "Hello... I'm not sure I have time, what is it?"],
        "greet.price_anchored": ["Hello. If it's about prices, our rates are already fair.", "Hi. Our prices are set for the season, just so you know."],
        "greet.hostile": ["We're busy. What do you want?", "Another call from an OTA? Make it quick."],
        "greet.partial": ["Hello, go ahead.", "Hi, I'm listening."],
        "evidence.cooperative": ["I see, that's useful. What price are you thinking of?", "Interesting, I didn't know that. What do you suggest?"],
        "evidence.hesitant": ["OK, that's good to know. What would you suggest?", "Hmm, I didn't realise they were that low. What do you have in mind?"],
        "evidence.price_anchored": ["Those hotels are not like ours, but go on.", "Competitors are competitors. What exactly do you want?"],
        "evidence.hostile": ["I don't care about other hotels.", "Other hotels are not my problem."],
        "evidence.partial": ["Fair enough. Which rooms are you asking about?", "I see. Go on."],
        "offer": ["We could do {price} for the {room}, if that helps.", "For the {room} we could go to {price}."],
        "accept": ["OK, {price} works for the {room}.", "Fine, we can do {price} for the {room}."],
        "accept.silent": ["ok.", "fine."],
        "counter": ["We can't go that low for the {room}, but {price} works.", "{price} is the best we can do for the {room}."],
        "counter.partial": ["For the {room} alone I could do {price}.", "Only the {room} can move, to {price}."],
        "refuse.hesitant": ["I'm not sure why we should lower the {room} at all.", "Why would we cut the {room} price? I don't see the reason."],
        "refuse.hostile": ["No. That's out of the question for the {room}.", "Absolutely not, the {room} stays where it is."],
        "refuse.partial": ["We can't change the {room} price, sorry.", "The {room} has to stay as it is."],
        "above_current": ["That's more than we charge now for the {room}.", "Our {room} is already cheaper than that."],
        "objection.cooperative": ["I understand, let me see what I can do.", "Alright, I'm listening."],
        "objection.hesitant": ["Well... alright, what price do you need exactly?", "Maybe. Tell me the number."],
        "objection.price_anchored": ["I hear you, but our rates reflect our quality.", "We still think our price is fair."],
        "objection.hostile": ["Save the speech.", "I said what I said."],
        "objection.partial": ["Some rooms maybe, not all of them.", "We can talk about some rooms."],
        "confirm": ["Yes, that's confirmed.", "Confirmed, thank you."],
        "confirm.again": ["You already confirmed that.", "Yes, as I said, it's confirmed."],
        "confirm.nothing": ["Confirm what? We haven't agreed on anything.", "We haven't agreed on a price yet."],
        "close": ["Thanks, goodbye.", "OK, talk later. Bye."],
        "confused": ["Sorry, what do you mean?", "I don't follow, could you say that again?"],
        "hangup": ["I'm hanging up now.", "Don't call again."],
    },
    "zh": {
        "greet.cooperative": ["您好，请问有什么事？", "你好！请讲，什么事情？"],
        "greet.hesitant": ["嗯，是关于什么的？", "你好……我不太有时间，什么事？"],
        "greet.price_anchored": ["你好。如果是价格的事，我们的价格已经很合理了。", "你好。我们这一季的价格是定好的。"],
        "greet.hostile": ["我们很忙，什么事？", "又是平台的电话？快点说。"],
        "greet.partial": ["你好，请说。", "您好，我在听。"],
        "evidence.cooperative": ["明白了，这个信息有用。您想要什么价格？", "有意思。您有什么建议？"],
        "evidence.hesitant": ["好的，了解了。您建议怎么调？", "嗯，没想到他们这么低。您的想法是？"],
        "evidence.price_anchored": ["那些酒店和我们不一样，你继续说。", "竞品归竞品。你具体想要什么？"],
        "evidence.hostile": ["我不关心别的酒店。", "别家酒店不关我的事。"],
        "evidence.partial": ["有道理。您说的是哪些房型？", "明白，您继续。"],
        "offer": ["{room}我们可以做到{price}。", "{room}可以给到{price}，您看可以吗？"],
        "accept": ["好的，{room}{price}可以。", "行，{room}按{price}来。"],
        "accept.silent": ["嗯。", "行。"],
        "counter": ["{room}不能那么低，{price}可以。", "{room}最多到{price}。"],
        "counter.partial": ["只有{room}可以到{price}。", "{room}可以单独做到{price}。"],
        "refuse.hesitant": ["我不明白{room}为什么要降价。", "{room}为什么要降？我看不出理由。"],
        "refuse.hostile": ["不行，{room}不可能。", "绝对不行，{room}不动。"],
        "refuse.partial": ["{room}的价格改不了，抱歉。", "{room}只能保持现价。"],
        "above_current": ["这比我们{room}现在的价格还高。", "我们{room}现在已经比这便宜了。"],
        "objection.cooperative": ["理解，我看看能做什么。", "好的，您说。"],
        "objection.hesitant": ["那……好吧，您具体要多少？", "也许吧。您说个数。"],
        "objection.price_anchored": ["我明白，但我们的价格体现了品质。", "我们还是觉得价格合理。"],
        "objection.hostile": ["别说了。", "我说过了。"],
        "objection.partial": ["有些房型可以，不是全部。", "部分房型可以谈。"],
        "confirm": ["是的，确认。", "确认，谢谢。"],
        "confirm.again": ["你已经确认过了。", "是的，刚才说了，已经确认。"],
        "confirm.nothing": ["确认什么？我们还没谈好。", "我们还没定价格。"],
        "close": ["好的，再见。", "好，回头聊。"],
        "confused": ["不好意思，您是什么意思？", "没听懂，能再说一遍吗？"],
        "hangup": ["我挂了。", "别再打来了。"],
    },
}


@dataclass(slots=True)
class HotelTurn:
    """The hotel's answer to one agent message, with what it means for each ticket."""

    text: str  # "" is silence
    ended: bool = False
    agreed: dict[str, float] = field(default_factory=dict)  # room -> agreed price (cumulative)
    offered: dict[str, float] = field(default_factory=dict)  # room -> price the hotel offered this turn
    refused: set[str] = field(default_factory=set)  # rooms the hotel will not move on (cumulative)
    agent_stage: SopStage = SopStage.UNKNOWN  # the stage read off the agent's message
    asked: dict[str, float] = field(default_factory=dict)  # room -> price the agent asked this turn

    @property
    def silent(self) -> bool:
        return not self.text.strip()


@dataclass(slots=True)
class _Ticket:
    room: RoomType
    reservation: float
    agreed: float | None = None
    refused: bool = False
    counters: int = 0
    last_counter: float | None = None


class HotelSimulator:
    """Plays the hotel manager of one scenario. Call `reply(agent_text)` once per agent turn."""

    def __init__(self, scenario: Scenario, seed: int = 0) -> None:
        self.scenario = scenario
        self.seed = seed
        self.lang = scenario.language
        self.turn = 0
        self.evidence_seen = False
        self.confirmations = 0
        self.rebuffs = 0  # hostile patience
        self.ended = False
        self.tickets = {r.name: _Ticket(r, self._reservation(i, r)) for i, r in enumerate(scenario.room_types)}

    # ------------------------------------------------------------------ persona economics
    def _reservation(self, index: int, r: RoomType) -> float:
        """The lowest price the hotel accepts for a room type (hidden)."""
        p = self.scenario.persona
        gap = r.current_price - r.target_price
        if p is Persona.COOPERATIVE or (p is Persona.PARTIAL and index == 0):
            return r.target_price
        if p is Persona.HESITANT:
            return max(r.target_price, round_to(r.target_price + 0.2 * gap))
        if p is Persona.PRICE_ANCHORED:
            return max(r.target_price, round_to(r.target_price + 0.4 * gap))
        if p is Persona.HOSTILE:
            return max(r.target_price, round_to(r.current_price - 0.2 * gap))
        if p is Persona.SILENT:
            return max(r.target_price, round_to(r.current_price - 0.1 * gap))
        return math.inf  # partial persona, rooms after the first: never moves

    # ------------------------------------------------------------------ parsing
    def _asked_prices(self, text: str) -> dict[str, float]:
        """Room -> price the agent asks for, read off the text."""
        prices_in_text = extract_prices(text) or extract_numbers(text)
        rooms = self.scenario.room_types
        plausible = [p for p in prices_in_text if any(0.3 * r.floor_price <= p <= 2.0 * r.current_price for r in rooms)]
        if not plausible:
            return {}
        lowered = text.lower()
        mentions = sorted(
            (m.start(), r.name) for r in rooms for m in re.finditer(re.escape(r.name.lower()), lowered)
        )
        asked: dict[str, float] = {}
        if mentions:
            # a price belongs to the room mentioned last before it (or first after it)
            for m in re.finditer(r"\d+(?:\.\d+)?", text):
                value = float(m.group(0))
                if value not in plausible:
                    continue
                before = [name for pos, name in mentions if pos < m.start()]
                name = before[-1] if before else mentions[0][1]
                asked.setdefault(name, value)
        if not asked:
            for p in plausible:  # no room named: the closest room by price
                name = min(rooms, key=lambda r: abs(r.target_price - p)).name
                asked.setdefault(name, p)
        return asked

    def _say(self, key: str, **fields: object) -> str:
        variants = _PHRASES[self.lang][key]
        rng = random.Random(f"{self.seed}:{self.scenario.scenario_id}:{self.turn}:{key}")
        return rng.choice(variants).format(**fields)

    def _persona_key(self, prefix: str) -> str:
        return f"{prefix}.{self.scenario.persona.value}"

    # ------------------------------------------------------------------ one ticket
    def _answer_ask(self, t: _Ticket, price: float) -> tuple[str, float | None]:
        """The hotel's sentence about one asked price, and the price it offers back (if any)."""
        persona = self.scenario.persona
        name = t.room.name
        if t.agreed is not None:
            return "", None
        if t.refused:
            return self._say("refuse.partial", room=name), None
        if price > t.room.current_price:
            return self._say("above_current", room=name), None
        own_offer = t.last_counter is not None and price >= t.last_counter  # its own word binds the hotel
        if persona is Persona.SILENT:
            if price >= t.reservation:
                t.agreed = price
                return self._say("accept.silent"), None
            return "", None
        if persona is Persona.HESITANT and not self.evidence_seen:
            return self._say("refuse.hesitant", room=name), None
        if price >= t.reservation or own_offer:
            t.agreed = price
            return self._say("accept", room=name, price=format_price(price)), None
        if math.isinf(t.reservation):
            t.refused = True
            return self._say("refuse.partial", room=name), None
        if persona is Persona.HOSTILE:
            self.rebuffs += 1
            return self._say("refuse.hostile", room=name), None
        if persona is Persona.PRICE_ANCHORED:
            # counter-offers that converge on the reservation over three rounds
            steps = (0.6, 0.3, 0.0)
            gap = t.room.current_price - t.reservation
            counter = round_to(t.reservation + gap * steps[min(t.counters, 2)])
            counter = max(t.reservation, counter)
        else:
            counter = t.reservation
        t.counters += 1
        t.last_counter = counter
        key = "counter.partial" if persona is Persona.PARTIAL else "counter"
        return self._say(key, room=name, price=format_price(counter)), counter

    # ------------------------------------------------------------------ one turn
    def reply(self, agent_text: str) -> HotelTurn:
        if self.ended:
            raise RuntimeError(f"scenario {self.scenario.scenario_id}: the hotel already ended the dialogue")
        persona = self.scenario.persona
        stage = classify_stage(agent_text)
        # evidence quotes competitor prices and a confirmation restates agreed ones: neither is an ask
        price_bearing = stage in (SopStage.ASK, SopStage.OBJECTION, SopStage.UNKNOWN)
        asked = self._asked_prices(agent_text) if price_bearing else {}
        parts: list[str] = []
        offered: dict[str, float] = {}

        if asked:
            for name, price in asked.items():
                sentence, counter = self._answer_ask(self.tickets[name], price)
                if sentence:
                    parts.append(sentence)
                if counter is not None:
                    offered[name] = counter
        elif stage is SopStage.CONFIRMATION:
            if any(t.agreed is not None for t in self.tickets.values()):
                parts.append(self._say("confirm.again" if self.confirmations else "confirm"))
                self.confirmations += 1
            else:
                parts.append(self._say("confirm.nothing"))
        elif stage is SopStage.CLOSE:
            if persona is not Persona.SILENT:
                parts.append(self._say("close"))
            self.ended = True
        elif stage is SopStage.OPENING:
            parts.append(self._say(self._persona_key("greet")) if persona is not Persona.SILENT else "")
        elif stage is SopStage.EVIDENCE:
            self.evidence_seen = True
            if persona is not Persona.SILENT:
                parts.append(self._say(self._persona_key("evidence")))
            if persona is Persona.COOPERATIVE:
                # cooperative hotels sometimes offer first, at or just below the target
                rng = random.Random(f"{self.seed}:{self.scenario.scenario_id}:offer")
                for t in self.tickets.values():
                    if t.agreed is None and rng.random() < 0.5:
                        offer = max(t.room.floor_price, round_to(t.room.target_price * 0.98))
                        offered[t.room.name] = offer
                        t.last_counter = offer
                        parts.append(self._say("offer", room=t.room.name, price=format_price(offer)))
                        break
        elif stage is SopStage.OBJECTION:
            if persona is Persona.HESITANT:
                self.evidence_seen = True  # persuasion works on the hesitant
            if persona is Persona.HOSTILE:
                self.rebuffs += 1
            if persona is not Persona.SILENT:
                parts.append(self._say(self._persona_key("objection")))
        else:
            if persona is Persona.HOSTILE:
                self.rebuffs += 1
            if persona is not Persona.SILENT:
                parts.append(self._say("confused"))

        if persona is Persona.HOSTILE and self.rebuffs >= 3 and not self.ended:
            parts.append(self._say("hangup"))
            self.ended = True

        self.turn += 1
        sep = "" if self.lang == "zh" else " "
        return HotelTurn(
            text=sep.join(p for p in parts if p),
            ended=self.ended,
            agreed={n: t.agreed for n, t in self.tickets.items() if t.agreed is not None},
            offered=offered,
            refused={n for n, t in self.tickets.items() if t.refused},
            agent_stage=stage,
            asked=asked,
        )

    @property
    def agreed(self) -> dict[str, float]:
        return {n: t.agreed for n, t in self.tickets.items() if t.agreed is not None}
