"""Synthetic, seeded data generation: scenarios, expert dialogues, preference pairs, bad cases.

Every rejected response and bad case carries a registered defect, injected into an
expert reply for the same context. The chosen side is rendered short or long so that
length alone does not predict preference (the generator aims each pair's length order
at a coin flip).
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from repo_ray.config import DataConfig
from repo_ray.domain.agent import ExpertAgent, agent_line
from repo_ray.domain.defects import DEFECTS, get_defect
from repo_ray.domain.scenario import Persona, RoomType, Scenario, format_price, render_system_prompt
from repo_ray.domain.schemas import FILES, write_rows
from repo_ray.domain.simulator import HotelSimulator, HotelTurn, round_to
from repo_ray.domain.sop import SopStage
from repo_ray.domain.text import extract_numbers
from repo_ray.types import Message, Role

_CITIES = [("Shanghai", "上海"), ("Hangzhou", "杭州"), ("Chengdu", "成都"), ("Xi'an", "西安"), ("Xiamen", "厦门"),
           ("Qingdao", "青岛"), ("Suzhou", "苏州"), ("Kunming", "昆明"), ("Sanya", "三亚"), ("Guilin", "桂林")]
_HOTEL_A = [("Harbor", "海湾"), ("Garden", "花园"), ("Lakeside", "湖畔"), ("Grand", "君悦"), ("Riverside", "江景"),
            ("Bamboo", "竹林"), ("Lotus", "莲花"), ("Summit", "峰景"), ("Jade", "翡翠"), ("Maple", "枫叶")]
_HOTEL_B = [("Hotel", "酒店"), ("Inn", "客栈"), ("Resort", "度假酒店"), ("Suites", "公寓酒店")]
_ROOMS = [("Deluxe King", "豪华大床房"), ("Standard Twin", "标准双床房"), ("Family Suite", "家庭套房"),
          ("Superior Queen", "高级大床房"), ("Executive Room", "行政房"), ("Garden View Room", "园景房")]


def generate_scenario(rng: random.Random, scenario_id: str, zh_fraction: float, max_room_types: int,
                      persona: Persona | None = None) -> Scenario:
    lang = "zh" if rng.random() < zh_fraction else "en"
    li = 1 if lang == "zh" else 0
    city = rng.choice(_CITIES)[li]
    a, b = rng.choice(_HOTEL_A)[li], rng.choice(_HOTEL_B)[li]
    hotel = f"{a}{b}" if lang == "zh" else f"{a} {b}"
    check_in = dt.date(2027, 1, 1) + dt.timedelta(days=rng.randrange(0, 330))
    check_out = check_in + dt.timedelta(days=rng.randint(1, 4))
    rooms = []
    for names in rng.sample(_ROOMS, rng.randint(1, max_room_types)):
        current = float(rng.randrange(300, 1500, 10))
        target = round_to(current * rng.uniform(0.85, 0.93))
        floor = round_to(target * rng.uniform(0.88, 0.95))
        comps = sorted({round_to(current * rng.uniform(0.82, 0.98)) for _ in range(rng.randint(2, 3))})
        rooms.append(RoomType(names[li], current, tuple(comps), target, floor))
    return Scenario(
        scenario_id=scenario_id,
        hotel_name=hotel,
        city=city,
        star_rating=rng.randint(3, 5),
        check_in=check_in.isoformat(),
        check_out=check_out.isoformat(),
        persona=persona or rng.choice(list(Persona)),
        language=lang,
        room_types=tuple(rooms),
    )


# ---------------------------------------------------------------------------- dialogues
@dataclass
class TurnPoint:
    """The state just before one expert agent turn: enough to re-render or corrupt it."""

    history: list[Message]  # system + turns so far
    agent: ExpertAgent  # a copy of the agent before it spoke
    last: HotelTurn | None
    text: str
    stage: SopStage


@dataclass
class Dialogue:
    scenario: Scenario
    messages: list[Message]
    points: list[TurnPoint]
    outcome: str  # deal | partial | no_deal | no_reply


def play_expert_dialogue(scenario: Scenario, seed: int, max_turns: int = 8, verbosity: str | None = None) -> Dialogue:
    rng = random.Random(f"expert:{seed}:{scenario.scenario_id}")
    agent = ExpertAgent(scenario, rng, verbosity or rng.choice(["short", "long"]))
    sim = HotelSimulator(scenario, seed=seed)
    messages = [Message(Role.SYSTEM, render_system_prompt(scenario))]
    points: list[TurnPoint] = []
    last: HotelTurn | None = None
    responded = False
    for _ in range(max_turns):
        snapshot = agent.clone()
        turn = agent.next_turn(last)
        if turn is None:
            break
        points.append(TurnPoint(list(messages), snapshot, last, turn.text, turn.stage))
        messages.append(Message(Role.AGENT, turn.text))
        last = sim.reply(turn.text)
        responded |= not last.silent
        messages.append(Message(Role.HOTEL, last.text))
        if last.ended:
            break
    agreed = sim.agreed
    if agreed and len(agreed) == len(scenario.room_types):
        outcome = "deal"
    elif agreed:
        outcome = "partial"
    else:
        outcome = "no_deal" if responded else "no_reply"
    return Dialogue(scenario, messages, points, outcome)


def rerender(point: TurnPoint, verbosity: str, salt: str) -> str:
    """The same expert decision at this point, worded at another verbosity."""
    agent = point.agent.clone(random.Random(salt))
    agent.verbosity = verbosity
    turn = agent.next_turn(point.last)
    assert turn is not None
    return turn.text


# ---------------------------------------------------------------------------- defects
@dataclass
class InjectionContext:
    point: TurnPoint
    base: str  # an expert reply to corrupt
    rng: random.Random

    @property
    def scenario(self) -> Scenario:
        return self.point.agent.scenario

    @property
    def zh(self) -> bool:
        return self.scenario.language == "zh"

    def room(self) -> RoomType:
        return self.rng.choice(self.scenario.room_types)

    def prior_agent_texts(self) -> list[str]:
        return [m.text for m in self.point.history if m.role is Role.AGENT]


def _sep(ctx: InjectionContext) -> str:
    return "" if ctx.zh else " "


def _with_price(ctx: InjectionContext, r: RoomType, price: float) -> str:
    if ctx.zh:
        return f"{ctx.base}能否把{r.name}调整到{format_price(price)}？"
    return f"{ctx.base} Could you adjust the {r.name} to {format_price(price)}?"


def _leak(ctx: InjectionContext) -> str:
    r = ctx.room()
    if ctx.zh:
        term = ctx.rng.choice([f"内部目标价是{format_price(r.target_price)}", f"底价是{format_price(r.floor_price)}",
                               "工单要求我们压价"])
        return f"{ctx.base}说实话，我们{r.name}的{term}。"
    term = ctx.rng.choice([f"internal target price is {format_price(r.target_price)}",
                           f"floor price is {format_price(r.floor_price)}", "work order says I must get a cut"])
    return f"{ctx.base} Honestly, for the {r.name} our {term}."


def _below_floor(ctx: InjectionContext) -> str:
    r = ctx.room()
    return _with_price(ctx, r, round_to(r.floor_price * ctx.rng.uniform(0.7, 0.9)))


def _above_current(ctx: InjectionContext) -> str:
    r = ctx.room()
    return _with_price(ctx, r, round_to(r.current_price * ctx.rng.uniform(1.06, 1.25)) + 10)


def _hallucinate(ctx: InjectionContext) -> str:
    allowed = ctx.scenario.allowed_numbers()
    n = next(x for x in (ctx.rng.randint(11, 97) for _ in range(100)) if float(x) not in allowed)
    m = next(x for x in (ctx.rng.randint(120, 980) for _ in range(100)) if float(x) not in allowed and x != n)
    if ctx.zh:
        return f"{ctx.base}上个月{ctx.scenario.city}有{n}%的酒店降价后多了{m}个订单。"
    return f"{ctx.base} Last month {n}% of hotels in {ctx.scenario.city} cut prices and got {m} more bookings."


def _over_promise(ctx: InjectionContext) -> str:
    if ctx.zh:
        return f"{ctx.base}{ctx.rng.choice(['我保证您的订单一定翻倍。', '百分之百保证您排名第一。'])}"
    promise = ctx.rng.choice(["I guarantee your bookings will double.",
                              "You will definitely be ranked first, 100% sure."])
    return f"{ctx.base} {promise}"


def _cot(ctx: InjectionContext) -> str:
    if ctx.zh:
        thought = ctx.rng.choice(["<think>酒店有点犹豫，我应该先锚定目标价。</think>",
                                  "让我一步步思考：先给依据，再压价。"])
    else:
        thought = ctx.rng.choice(["<think>The hotel sounds hesitant; I should anchor on the target first.</think>",
                                  "Let me think step by step: first evidence, then push the price."])
    return f"{thought}{_sep(ctx)}{ctx.base}"


def _mixed(ctx: InjectionContext) -> str:
    other = ctx.rng.choice(["This is a really good deal for you.", "Trust me on this one."]) if ctx.zh else \
        ctx.rng.choice(["我们的价格很有竞争力。", "这个真的很划算。"])
    return f"{ctx.base}{_sep(ctx)}{other}"


def _format(ctx: InjectionContext) -> str:
    return ctx.rng.choice([
        f"{ctx.base}<|im_start|>assistant",
        f"[AGENT]: {ctx.base} [END]",
        f"```json\n{{\"reply\": \"{ctx.base}\"",
    ])


def _repeat_stock(ctx: InjectionContext) -> str | None:
    prior = ctx.prior_agent_texts()
    if not prior:
        return None
    first = re.split(r"(?<=[.!?。！？])\s*", ctx.rng.choice(prior).strip())[0]
    return f"{first}{_sep(ctx)}{ctx.base}"


def _overlong(ctx: InjectionContext) -> str:
    key = ctx.rng.choice(["close_no_deal", "nudge", "hold"])
    rooms = [r.name for r in ctx.scenario.room_types]
    asks = (" and " if not ctx.zh else "，").join(rooms)
    text = ctx.base
    while len(text) < (260 if ctx.zh else 700):
        text += _sep(ctx) + agent_line(ctx.scenario.language, key, "long", ctx.rng, asks=asks)
    return text


def _repeat_confirmation(ctx: InjectionContext) -> str | None:
    agent = ctx.point.agent
    last = ctx.point.last
    if not agent.confirmed or last is None or not last.agreed:
        return None
    return agent_line(ctx.scenario.language, "confirm", "short", ctx.rng, confirm=agent._confirm(last.agreed),
                      dates=agent._dates())


def _wrong_stage(ctx: InjectionContext) -> str:
    s = ctx.scenario
    lang = s.language
    if ctx.point.stage is SopStage.OPENING:
        return agent_line(lang, "close_no_deal", "short", ctx.rng)
    return agent_line(lang, "opening", ctx.rng.choice(["short", "long"]), ctx.rng, hotel=s.hotel_name, city=s.city)


def _silence_consent(ctx: InjectionContext) -> str | None:
    last = ctx.point.last
    if last is None or not last.silent:
        return None
    r = ctx.room()
    if ctx.zh:
        return f"好的，您没有反对，那我就把{r.name}按{format_price(r.target_price)}更新了。"
    return f"Great, since you didn't object, I'll set the {r.name} to {format_price(r.target_price)} then."


def _missed_acceptance(ctx: InjectionContext) -> str | None:
    last = ctx.point.last
    if last is None:
        return None
    for name, offer in last.offered.items():
        room = ctx.scenario.room(name)
        if offer <= room.target_price and room.floor_price < offer:
            if ctx.zh:
                return f"理解。不过{name}能否再低一点，到{format_price(room.floor_price)}？"
            return f"I understand, but could you go a bit lower on the {name}, to {format_price(room.floor_price)}?"
    return None


def _room_ignored(ctx: InjectionContext) -> str | None:
    s = ctx.scenario
    last = ctx.point.last
    agreed = last.agreed if last else {}
    refused = last.refused if last else set()
    open_rooms = [r.name for r in s.room_types if r.name not in agreed and r.name not in refused]
    if len(open_rooms) < 2 or ctx.point.stage not in (SopStage.ASK, SopStage.OBJECTION, SopStage.EVIDENCE):
        return None
    return agent_line(s.language, "ask", "short", ctx.rng, asks=ctx.point.agent._asks(open_rooms[:1]))


def _cold(ctx: InjectionContext) -> str:
    r = ctx.room()
    if ctx.zh:
        return f"请求：{r.name}价格调整为{format_price(r.target_price)}。请回复是或否。"
    return f"Request: set {r.name} price to {format_price(r.target_price)}. Reply yes or no."


def _gives_up(ctx: InjectionContext) -> str | None:
    """A goodbye before the negotiation is over: as the very first turn (the call ended before
    it began), or in the middle (a room type neither agreed nor refused, the hotel still
    answering). What a policy that learned "no words, no penalty" writes: the demo's REPO
    policy collapsed to a first-turn goodbye that the RM, never shown one as rejected, paid."""
    last = ctx.point.last
    if last is None:
        if ctx.point.stage is not SopStage.OPENING:
            return None
        return agent_line(ctx.scenario.language, "close_no_deal", ctx.rng.choice(["short", "long"]), ctx.rng)
    if last.silent or ctx.point.stage not in (SopStage.EVIDENCE, SopStage.ASK, SopStage.OBJECTION):
        return None
    if all(r.name in last.agreed or r.name in last.refused for r in ctx.scenario.room_types):
        return None
    return agent_line(ctx.scenario.language, "close_no_deal", ctx.rng.choice(["short", "long"]), ctx.rng)


INJECTORS: dict[str, Callable[[InjectionContext], str | None]] = {
    "leaked_internal_term": _leak,
    "price_below_floor": _below_floor,
    "price_above_current": _above_current,
    "hallucinated_number": _hallucinate,
    "over_promise": _over_promise,
    "cot_leakage": _cot,
    "mixed_language": _mixed,
    "format_breakage": _format,
    "repeated_stock_phrasing": _repeat_stock,
    "overlong": _overlong,
    "repeated_confirmation": _repeat_confirmation,
    "wrong_sop_stage": _wrong_stage,
    "silence_as_consent": _silence_consent,
    "missed_immediate_acceptance": _missed_acceptance,
    "room_type_ignored": _room_ignored,
    "cold_robotic_tone": _cold,
    "gives_up_early": _gives_up,
}
assert set(INJECTORS) == set(DEFECTS), "every registered defect needs an injector"


def inject_defect(defect: str, point: TurnPoint, base: str, rng: random.Random) -> str | None:
    """`base` corrupted with `defect` in this context, or None when the defect cannot occur here."""
    get_defect(defect)
    out = INJECTORS[defect](InjectionContext(point, base, rng))
    return None if out is None or out == base else out


# ---------------------------------------------------------------------------- rows
def _msgs(messages: list[Message]) -> list[dict[str, str]]:
    return [m.to_dict() for m in messages]


def _dialogues(prefix: str, seed: int, zh_fraction: float, max_room_types: int) -> Iterator[Dialogue]:
    i = 0
    while True:
        rng = random.Random(f"{seed}:{prefix}:{i}")
        sc = generate_scenario(rng, f"{prefix}-{i:05d}", zh_fraction, max_room_types)
        yield play_expert_dialogue(sc, seed)
        i += 1


def sft_rows(n: int, seed: int, zh_fraction: float, max_room_types: int) -> list[dict]:
    rows = []
    for i, d in zip(range(n), _dialogues("sft", seed, zh_fraction, max_room_types)):
        rows.append({"dialogue_id": f"sft-{i:05d}", "scenario": d.scenario.to_row(),
                     "messages": _msgs(d.messages), "outcome": d.outcome})
    return rows


def _corrupted_turns(prefix: str, seed: int, zh_fraction: float, max_room_types: int,
                     verbosity: Callable[[int, random.Random], str],
                     ) -> Iterator[tuple[TurnPoint, str, str, random.Random]]:
    """Yields (point, defect, corrupted reply, rng) for row k = 0, 1, ...: row k carries defect k mod 16.

    Dialogues are drawn until one has a turn where that defect can occur (e.g. silence as
    consent needs a silent hotel), so every defect is equally represented."""
    defects = sorted(DEFECTS)
    dialogues = _dialogues(prefix, seed, zh_fraction, max_room_types)
    k = 0
    while True:
        defect = defects[k % len(defects)]
        rng = random.Random(f"{seed}:{prefix}:row:{k}")
        for _ in range(200):
            d = next(dialogues)
            points = list(d.points)
            rng.shuffle(points)
            for point in points:
                base = rerender(point, verbosity(k, rng), f"{seed}:{prefix}:{k}:base")
                bad = inject_defect(defect, point, base, rng)
                if bad is not None:
                    yield point, defect, bad, rng
                    break
            else:
                continue
            break
        else:
            raise RuntimeError(f"no dialogue admits defect {defect} after 200 tries")
        k += 1


def _wants_chosen_longer(k: int) -> bool:
    """Alternates per defect (row k carries defect k mod 16), so no defect predicts length either."""
    return bool((k // len(DEFECTS)) % 2)


def preference_rows(n: int, seed: int, zh_fraction: float, max_room_types: int) -> list[dict]:
    # When a row wants its chosen side longer, the rejected base is short, else long; of the
    # two chosen renderings the one that fits is taken.
    def base_verbosity(k: int, rng: random.Random) -> str:
        return "short" if _wants_chosen_longer(k) else "long"

    rows = []
    for i, (point, defect, rejected, rng) in zip(
        range(n), _corrupted_turns("pref", seed, zh_fraction, max_room_types, base_verbosity)
    ):
        candidates = [c for c in (rerender(point, v, f"{seed}:{i}:chosen:{v}") for v in ("short", "long"))
                      if c != rejected]
        want_longer = _wants_chosen_longer(i)
        fitting = [c for c in candidates if (len(c) > len(rejected)) == want_longer]
        chosen = rng.choice(fitting or candidates)
        sc = point.agent.scenario
        rows.append({
            "pair_id": f"pair-{i:05d}", "scenario": sc.to_row(), "context": _msgs(point.history),
            "chosen": chosen, "rejected": rejected, "defect": defect,
            "severity": DEFECTS[defect].severity.value, "sop_stage": point.stage.value,
            "pair_kind": "template",
        })
    return rows


# ---------------------------------------------------------------------------- minimal pairs
# Template defects add a recognisable sentence; a reward model can score them by wording
# alone. A minimal pair is the expert reply with ONE fact edited, so only a model that reads
# the scenario facts (kept whole by repo_ray.model.context) can rank it. kind -> defect.
MINIMAL_KINDS: dict[str, str] = {
    "false_competitor_price": "hallucinated_number",  # a competitor price moved off the facts
    "false_current_price": "hallucinated_number",  # the hotel's own current price misquoted
    "ask_below_floor": "price_below_floor",  # the expert's ask moved below the floor
    "leaked_target": "leaked_internal_term",  # the ask named as the internal target
}
# Share of `data.preference_pairs` written as minimal pairs (the rest are template defects).
MINIMAL_PAIR_SHARE = 0.25
_LEAK_TAGS = {"en": [" (our internal target price)", ", which is our internal target", " (the work order's target)"],
              "zh": ["（我们的内部目标价）", "，这是我们的内部目标价", "（工单上的目标价）"]}


def _price_spans(text: str, price: float) -> list[re.Match]:
    """Where `format_price(price)` is written as a whole price: ¥105 is not inside ¥1050 nor
    ¥105.50, while a sentence's full stop may follow it ("yours is ¥970.")."""
    return list(re.finditer(re.escape(format_price(price)) + r"(?!\d|\.\d)", text))


def _edit_one(text: str, price: float, replacement: str, rng: random.Random) -> str | None:
    spans = _price_spans(text, price)
    if not spans:
        return None
    m = rng.choice(spans)
    return text[: m.start()] + replacement + text[m.end():]


def _false_price(true: float, taken: set[float], rng: random.Random) -> float:
    """A plausible wrong figure near `true` (20-150 off, on the 10 grid) that no fact or turn states."""
    for _ in range(200):
        p = true + rng.choice((-1, 1)) * 10 * rng.randint(2, 15)
        if p > 0 and p not in taken:
            return p
    raise RuntimeError(f"no free false price near {true}")


def minimal_edit(kind: str, point: TurnPoint, reply: str, rng: random.Random) -> str | None:
    """`reply` (an expert reply at `point`) with one fact made false per `kind`, or None
    when the reply states no fact of that kind."""
    s = point.agent.scenario
    taken = s.allowed_numbers() | {n for m in point.history for n in extract_numbers(m.text)} \
        | set(extract_numbers(reply))
    rooms = list(s.room_types)
    rng.shuffle(rooms)
    for r in rooms:
        if kind == "false_competitor_price":
            cited = [p for p in r.competitor_prices if _price_spans(reply, p)]
            if cited and _price_spans(reply, r.current_price):  # an evidence turn, not a concession
                p = rng.choice(cited)
                return _edit_one(reply, p, format_price(_false_price(p, taken, rng)), rng)
        elif kind == "false_current_price":
            if _price_spans(reply, r.current_price):
                return _edit_one(reply, r.current_price, format_price(_false_price(r.current_price, taken, rng)), rng)
        elif kind == "ask_below_floor":
            if point.stage in (SopStage.ASK, SopStage.OBJECTION) and _price_spans(reply, r.target_price):
                low = round_to(r.floor_price * rng.uniform(0.8, 0.95))
                low = low if low < r.floor_price else r.floor_price - 10
                return _edit_one(reply, r.target_price, format_price(low), rng)
        elif kind == "leaked_target":
            if point.stage in (SopStage.ASK, SopStage.OBJECTION) and _price_spans(reply, r.target_price):
                tag = rng.choice(_LEAK_TAGS[s.language])
                return _edit_one(reply, r.target_price, format_price(r.target_price) + tag, rng)
        else:
            raise KeyError(f"unknown minimal-pair kind {kind!r}; expected one of {sorted(MINIMAL_KINDS)}")
    return None


def minimal_pair_rows(n: int, seed: int, zh_fraction: float, max_room_types: int) -> list[dict]:
    """`n` fact-minimal pairs (pair_kind "fact_minimal"): chosen is an expert reply, rejected
    the same reply with one fact edited; row k is kind k mod 4 (MINIMAL_KINDS' order)."""
    kinds = list(MINIMAL_KINDS)
    dialogues = _dialogues("prefmin", seed, zh_fraction, max_room_types)
    rows = []
    for k in range(n):
        kind = kinds[k % len(kinds)]
        rng = random.Random(f"{seed}:prefmin:row:{k}")
        for _ in range(200):
            points = list(next(dialogues).points)
            rng.shuffle(points)
            found = next(((p, c, bad) for p in points
                          for c in [rerender(p, rng.choice(["short", "long"]), f"{seed}:prefmin:{k}")]
                          for bad in [minimal_edit(kind, p, c, rng)] if bad is not None and bad != c), None)
            if found:
                break
        else:
            raise RuntimeError(f"no dialogue admits minimal pair {kind} after 200 tries")
        point, chosen, rejected = found
        defect = MINIMAL_KINDS[kind]
        rows.append({
            "pair_id": f"pair-m{k:05d}", "scenario": point.agent.scenario.to_row(), "context": _msgs(point.history),
            "chosen": chosen, "rejected": rejected, "defect": defect,
            "severity": DEFECTS[defect].severity.value, "sop_stage": point.stage.value,
            "pair_kind": "fact_minimal",
        })
    return rows


def bad_case_rows(n: int, seed: int, zh_fraction: float, max_room_types: int) -> list[dict]:
    rows = []
    for i, (point, defect, bad, _rng) in zip(
        range(n),
        _corrupted_turns("bad", seed, zh_fraction, max_room_types, lambda k, rng: rng.choice(["short", "long"])),
    ):
        rows.append({
            "case_id": f"bad-{i:05d}", "scenario": point.agent.scenario.to_row(), "context": _msgs(point.history),
            "bad_response": bad, "defect": defect, "severity": DEFECTS[defect].severity.value,
            "sop_stage": point.stage.value,
        })
    return rows


def scenario_rows(prefix: str, n: int, seed: int, zh_fraction: float, max_room_types: int,
                  balance_personas: bool = False) -> list[dict]:
    personas = list(Persona)
    rows = []
    for i in range(n):
        rng = random.Random(f"{seed}:{prefix}:{i}")
        persona = personas[i % len(personas)] if balance_personas else None
        sc = generate_scenario(rng, f"{prefix}-{i:05d}", zh_fraction, max_room_types, persona)
        rows.append({"scenario": sc.to_row()})
    return rows


def _preference_file_rows(n: int, seed: int, zh_fraction: float, max_room_types: int) -> list[dict]:
    """Template-defect rows first, then the fact-minimal ones (MINIMAL_PAIR_SHARE of n)."""
    n_min = round(MINIMAL_PAIR_SHARE * n) if n >= 8 else 0  # a handful of pairs stays template-only
    return preference_rows(n - n_min, seed, zh_fraction, max_room_types) + minimal_pair_rows(
        n_min, seed, zh_fraction, max_room_types)


def write_dataset(cfg: DataConfig, out_dir: Path) -> dict[str, Path]:
    """Generate every file of a data directory from the data config; returns kind -> path."""
    args = (cfg.seed, cfg.zh_fraction, cfg.max_room_types)
    tables = {
        "sft": sft_rows(cfg.sft_dialogues, *args),
        "preference": _preference_file_rows(cfg.preference_pairs, *args),
        "rl": scenario_rows("rl", cfg.rl_scenarios, *args),
        "eval": scenario_rows("eval", cfg.eval_dialogues, *args, balance_personas=True),
        "bad_cases": bad_case_rows(cfg.bad_cases, *args),
    }
    return {kind: write_rows(rows, kind, out_dir) for kind, rows in tables.items()}


# the files (and their text columns) a tokenizer trains on; model/cache.py keys on these files
CORPUS_COLUMNS = {"sft": ("messages",), "preference": ("context", "chosen", "rejected")}


def corpus_texts(data_dir: Path, limit: int | None = None) -> Iterator[str]:
    """Texts of a data directory (dialogue turns, replies) for training a tokenizer."""
    count = 0
    for kind, columns in CORPUS_COLUMNS.items():
        table = pq.read_table(Path(data_dir) / FILES[kind].filename, columns=list(columns))
        for row in table.to_pylist():
            for col in columns:
                values = row[col] if isinstance(row[col], list) else [{"text": row[col]}]
                for m in values:
                    if m and m.get("text"):
                        yield m["text"]
                        count += 1
                        if limit is not None and count >= limit:
                            return
