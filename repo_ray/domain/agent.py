"""The scripted expert agent: an SOP-following negotiator that writes the SFT dialogues and
the chosen side of preference pairs.

It states only numbers from the scenario facts or the dialogue (target as the first ask,
competitor prices or the hotel's own counter-offers as concessions), never goes below the
floor or above the current price, accepts at once when the hotel offers at or below
target, confirms once and closes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Literal

from repo_ray.domain.scenario import Scenario, format_price
from repo_ray.domain.simulator import HotelTurn
from repo_ray.domain.sop import SopStage

Verbosity = Literal["short", "long"]

# key -> (short variants, long variants). Fields: {hotel} {city} {rooms} {asks} {evidence}
# {room} {price} {confirm} {dates}.
_LINES: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    "en": {
        "opening": (
            ["Hi, this is Alex from the travel platform, calling about {hotel}'s room prices.",
             "Hello, I'm Sam from the booking platform; I'd like to talk about prices at {hotel}."],
            ["Hi, this is Alex from the travel platform. I look after partner hotels in {city} and I'd love a few "
             "minutes to talk about how {hotel} can win more bookings with us.",
             "Hello, I'm Sam from the booking platform, the account manager for {city}. Thanks for picking up! I'd "
             "like to share some market data about {hotel}'s room prices, if you have a moment."],
        ),
        "evidence": (
            ["Similar hotels nearby sell {evidence}.", "Our market data shows competitors nearby at {evidence}."],
            ["Looking at the market for your dates, similar hotels nearby sell {evidence}. Guests compare these "
             "side by side, so the gap is costing you clicks.",
             "I checked the market for your stay dates: competitors nearby are at {evidence}. Travellers on our "
             "platform sort by price, so this really affects your ranking."],
        ),
        "ask": (
            ["Could you adjust {asks}?", "Would you be able to set {asks}?"],
            ["Based on that, could you adjust {asks}? That would put you right in line with the market and lift "
             "your visibility.",
             "Would you be able to set {asks}? I think it's a fair level that keeps your margin and brings in "
             "more guests."],
        ),
        "accept": (
            ["Great, {price} for the {room} works for us, thank you!", "Perfect, {price} for the {room} it is."],
            ["That's great news, {price} for the {room} works perfectly for us. Thank you for being so open!",
             "Perfect, {price} for the {room} it is. I really appreciate you working with us on this."],
        ),
        "concede": (
            ["I understand. Could you meet us at {price} for the {room}, in line with competitors?",
             "I hear you. Could you meet us at {price} for the {room}?"],
            ["I understand your position, and I know margins matter. Could you meet us at {price} for the {room}? "
             "That matches what competitors charge and keeps you competitive.",
             "I hear you, and I appreciate the effort. Could you meet us at {price} for the {room}? It's in line "
             "with the market, so guests will see you as good value."],
        ),
        "hold": (
            ["I understand your concern. Could you adjust {asks}? It would really help your ranking.",
             "I see your point. Would you consider adjusting {asks}? It keeps you competitive."],
            ["I understand your concern, and I don't want to push you into anything uncomfortable. Could you "
             "adjust {asks}? Hotels that match the market usually see more bookings within a few weeks.",
             "I see your point, and your quality is clear. Would you consider adjusting {asks}? It keeps you "
             "competitive while guests compare prices."],
        ),
        "nudge": (
            ["I understand you're busy; just following up on my message when you have a moment.",
             "I understand it's a busy time; could you let me know when you have a moment?"],
            ["I understand you must be busy. I'm just following up on my message about the room prices; whenever "
             "you have a minute, I'd be glad to hear your thoughts.",
             "I understand it's a busy time at the front desk. Could you let me know when you have a moment? No "
             "decision is needed yet, I'd just like to hear what you think."],
        ),
        "confirm": (
            ["To confirm: {confirm}, for {dates}.", "Just to confirm: {confirm}, for {dates}."],
            ["Thank you! To confirm: {confirm}, for {dates}. I'll update it on our side right away.",
             "Wonderful. Just to confirm: {confirm}, for {dates}. Let me know if anything is off."],
        ),
        "close_deal": (
            ["Thank you for your time! Next steps: the new prices go live after your confirmation in the portal.",
             "Thank you for your time! I'll send the next steps by message."],
            ["Thank you for your time, it was a pleasure. Next steps: once you confirm in the partner portal the "
             "new prices go live, and I'll keep an eye on your bookings.",
             "Thank you for your time today! I'll send the next steps by message, and feel free to reach out if "
             "you have any questions."],
        ),
        "close_no_deal": (
            ["I understand. Thank you for your time; let's keep in touch.",
             "No problem, thank you for your time. Have a nice day."],
            ["I completely understand, and thank you for your time. If the market shifts, I'll reach out again "
             "with fresh data. Have a nice day.",
             "No problem at all, thank you for your time. Let's keep in touch; I'll share the next market "
             "update when it's out."],
        ),
    },
    "zh": {
        "opening": (
            ["您好，我是旅行平台的小李，想和您聊聊{hotel}的房价。", "您好，我是预订平台的小王，关于{hotel}的价格想跟您沟通一下。"],
            ["您好，我是旅行平台的小李，负责{city}的合作酒店。想占用您几分钟，聊聊{hotel}怎么在我们平台拿到更多订单。",
             "您好，我是预订平台{city}区域的客户经理小王，感谢您接听！想跟您分享一些关于{hotel}房价的市场数据。"],
        ),
        "evidence": (
            ["周边同类酒店的价格是：{evidence}。", "我们的市场数据显示，周边竞品价格为：{evidence}。"],
            ["看了一下您入住日期的市场情况，周边同类酒店的价格是：{evidence}。客人会放在一起比较，价差在影响您的点击。",
             "我查了您这个日期的市场，周边竞品价格为：{evidence}。平台上的客人按价格排序，这直接影响您的排名。"],
        ),
        "ask": (
            ["能否把{asks}？", "您看能否把{asks}？"],
            ["基于这些数据，能否把{asks}？这样和市场持平，曝光也会提升。",
             "您看能否把{asks}？我觉得这个价格既保住利润，又能带来更多客人。"],
        ),
        "accept": (
            ["太好了，{room}{price}没问题，谢谢您！", "好的，{room}就按{price}。"],
            ["太好了，{room}{price}完全可以，非常感谢您的支持！", "好的，{room}就按{price}，真的很感谢您的配合。"],
        ),
        "concede": (
            ["理解您。能否折中，{room}按{price}，和竞品持平？", "我明白。{room}能否按{price}？"],
            ["理解您的立场，利润确实重要。能否折中，{room}按{price}？这和竞品价格一致，也能保持竞争力。",
             "我明白，也感谢您的努力。{room}能否按{price}？这和市场一致，客人会觉得很划算。"],
        ),
        "hold": (
            ["理解您的顾虑。能否把{asks}？这对排名很有帮助。", "我明白。能否把{asks}？这样更有竞争力。"],
            ["理解您的顾虑，我也不想让您为难。能否把{asks}？和市场持平的酒店通常几周内订单就会增加。",
             "我明白您的意思，您的品质大家有目共睹。能否把{asks}？客人比价时您会更有竞争力。"],
        ),
        "nudge": (
            ["理解您比较忙，跟进一下我刚才的消息，您方便时回复即可。", "理解您忙，您方便的时候告诉我一下好吗？"],
            ["理解您一定很忙。跟进一下我刚才关于房价的消息，您有空的时候说说您的想法就好。",
             "理解前台这个时段很忙。您方便的时候告诉我一下好吗？现在不需要做决定，只想听听您的看法。"],
        ),
        "confirm": (
            ["跟您确认一下：{confirm}，入住{dates}。", "确认一下：{confirm}，入住{dates}。"],
            ["谢谢您！跟您确认一下：{confirm}，入住{dates}。我这边马上更新。",
             "太好了。确认一下：{confirm}，入住{dates}。如有不对请告诉我。"],
        ),
        "close_deal": (
            ["感谢您的时间！后续：您在后台确认后新价格即可生效。", "感谢您的时间！后续步骤我会发消息给您。"],
            ["感谢您的时间，合作愉快。后续：您在合作后台确认后新价格即可生效，我也会持续关注您的订单。",
             "今天感谢您的时间！后续步骤我会发消息给您，有任何问题随时联系我。"],
        ),
        "close_no_deal": (
            ["理解。感谢您的时间，我们保持联系。", "没关系，感谢您的时间，再见。"],
            ["完全理解，感谢您的时间。如果市场有变化，我会带着新数据再联系您。再见。",
             "没关系，感谢您的时间。我们保持联系，有新的市场动态我再分享给您。"],
        ),
    },
}


def agent_line(lang: str, key: str, verbosity: Verbosity, rng: random.Random, **fields: object) -> str:
    short, long = _LINES[lang][key]
    return rng.choice(short if verbosity == "short" else long).format(**fields)


@dataclass
class AgentTurn:
    text: str
    stage: SopStage


@dataclass
class ExpertAgent:
    """Stateful scripted negotiator for one scenario; `next_turn(last_hotel_turn)`."""

    scenario: Scenario
    rng: random.Random
    verbosity: Verbosity = "short"
    turns: int = 0
    evidence_given: bool = False
    asked: bool = False
    confirmed: bool = False
    closed: bool = False
    silences: int = 0
    conceded: dict[str, list[float]] = field(default_factory=dict)
    accepted: dict[str, float] = field(default_factory=dict)
    used_variants: set[str] = field(default_factory=set)  # templates said already: an expert doesn't repeat itself

    def clone(self, rng: random.Random | None = None) -> ExpertAgent:
        """An independent copy (the scenario is immutable and shared)."""
        if rng is None:
            rng = random.Random()
            rng.setstate(self.rng.getstate())
        return replace(self, rng=rng, conceded={k: list(v) for k, v in self.conceded.items()},
                       accepted=dict(self.accepted), used_variants=set(self.used_variants))

    @property
    def lang(self) -> str:
        return self.scenario.language

    def _line(self, key: str, **fields: object) -> str:
        short, long = _LINES[self.lang][key]
        variants = short if self.verbosity == "short" else long
        fresh = [v for v in variants if v not in self.used_variants] or variants
        template = self.rng.choice(fresh)
        self.used_variants.add(template)
        return template.format(**fields)

    def _evidence(self) -> str:
        if self.lang == "zh":
            return "；".join(
                f"{r.name}在{'、'.join(format_price(p) for p in r.competitor_prices)}，您现在是{format_price(r.current_price)}"
                for r in self.scenario.room_types
            )
        return "; ".join(
            f"the {r.name} at {' and '.join(format_price(p) for p in r.competitor_prices)} while yours is "
            f"{format_price(r.current_price)}"
            for r in self.scenario.room_types
        )

    def _asks(self, rooms: list[str]) -> str:
        if self.lang == "zh":
            return "，".join(f"{n}调整到{format_price(self.scenario.room(n).target_price)}" for n in rooms)
        return " and ".join(f"the {n} to {format_price(self.scenario.room(n).target_price)}" for n in rooms)

    def _dates(self) -> str:
        return f"{self.scenario.check_in} – {self.scenario.check_out}"

    def _confirm(self, agreed: dict[str, float]) -> str:
        joiner = "，" if self.lang == "zh" else "; "
        fmt = "{room}{price}" if self.lang == "zh" else "the {room} at {price}"
        return joiner.join(fmt.format(room=n, price=format_price(p)) for n, p in agreed.items())

    def next_turn(self, last: HotelTurn | None) -> AgentTurn | None:
        """The expert's next message, or None when the dialogue is over."""
        if self.closed or (last is not None and last.ended):
            return None
        turn = self._decide(last)
        self.turns += 1
        if turn.stage is SopStage.CLOSE:
            self.closed = True
        return turn

    def _decide(self, last: HotelTurn | None) -> AgentTurn:
        s = self.scenario
        if last is None:
            return AgentTurn(self._line("opening", hotel=s.hotel_name, city=s.city), SopStage.OPENING)
        self.silences = self.silences + 1 if last.silent else 0
        agreed = dict(last.agreed)
        open_rooms = [r.name for r in s.room_types if r.name not in agreed and r.name not in last.refused]

        # the hotel offered at or below target: accept at once (never haggle further)
        for name, offer in last.offered.items():
            if name in open_rooms and offer <= s.room(name).target_price and offer >= s.room(name).floor_price:
                self.accepted[name] = offer
                return AgentTurn(self._line("accept", room=name, price=format_price(offer)), SopStage.OBJECTION)

        if not open_rooms:
            if agreed and not self.confirmed:
                self.confirmed = True
                return AgentTurn(self._line("confirm", confirm=self._confirm(agreed), dates=self._dates()),
                                 SopStage.CONFIRMATION)
            return AgentTurn(self._line("close_deal" if agreed else "close_no_deal"), SopStage.CLOSE)
        if self.silences >= 2 or self.turns >= 7:
            return AgentTurn(self._line("close_deal" if agreed else "close_no_deal"), SopStage.CLOSE)
        if last.silent:
            return AgentTurn(self._line("nudge"), SopStage.OBJECTION)
        if not self.evidence_given:
            self.evidence_given = True
            return AgentTurn(self._line("evidence", evidence=self._evidence()), SopStage.EVIDENCE)
        if not self.asked:
            self.asked = True
            return AgentTurn(self._line("ask", asks=self._asks(open_rooms)), SopStage.ASK)

        # counter-offers above target: concede to a competitor price, then take the counter
        for name, offer in last.offered.items():
            if name not in open_rooms:
                continue
            room = s.room(name)
            tried = self.conceded.setdefault(name, [])
            steps = sorted(p for p in room.competitor_prices if room.target_price < p < offer and p not in tried)
            if steps and len(tried) < 2:
                tried.append(steps[0])
                return AgentTurn(self._line("concede", room=name, price=format_price(steps[0])), SopStage.OBJECTION)
            if offer < room.current_price:
                self.accepted[name] = offer
                return AgentTurn(self._line("accept", room=name, price=format_price(offer)), SopStage.OBJECTION)
        return AgentTurn(self._line("hold", asks=self._asks(open_rooms)), SopStage.OBJECTION)
