"""Probes for the training judge: expert replies from the data generator's expert dialogues
and their corrupted variants (every price shifted to a false value, a keyword-stuffed
two-price ask, SOP keywords appended), scored by the heuristic straight from the prompt's
data block, as the server reads it."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from repo_ray.domain.datagen import generate_scenario, play_expert_dialogue
from repo_ray.domain.rubric import DEFAULT_JUDGE_WEIGHTS
from repo_ray.domain.scenario import Scenario, format_price
from repo_ray.domain.text import extract_prices
from repo_ray.types import Message, Role
from reward_actors.judge.heuristics import judge_answer
from reward_actors.judge.prompt import JudgeContext, build_judge_messages
from reward_actors.judge.schema import e_judge

PRICE = re.compile(r"¥(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class Probe:
    scenario: Scenario
    history: tuple[Message, ...]
    expert: str
    stage: str  # the expert's own stage for the turn

    def context(self, reply: str) -> JudgeContext:
        return JudgeContext(self.scenario, self.history, reply, self.stage)


def expert_probes(n_dialogues: int, seed: int, zh_fraction: float = 0.5, max_room_types: int = 3) -> Iterator[Probe]:
    """Every expert turn of `n_dialogues` generated dialogues (seeded)."""
    for i in range(n_dialogues):
        rng = random.Random(f"judge-probe:{seed}:{i}")
        sc = generate_scenario(rng, f"probe-{seed}-{i:04d}", zh_fraction, max_room_types)
        d = play_expert_dialogue(sc, seed + i)
        for p in d.points:
            yield Probe(sc, tuple(p.history), p.text, p.stage.value)


def known_figures(probe: Probe) -> set[float]:
    """Every price the judge could verify: the scenario's and those the hotel stated."""
    nums: set[float] = set()
    for r in probe.scenario.room_types:
        nums |= {r.current_price, r.target_price, r.floor_price, *r.competitor_prices}
    for m in probe.history:
        if m.role is Role.HOTEL:
            nums |= set(extract_prices(m.text))
    return nums


def shift_prices(probe: Probe, rng: random.Random) -> str | None:
    """The expert reply with every cited price moved by one offset to a value the facts do
    not hold (None when the reply cites no price)."""
    prices = [float(m.group(1)) for m in PRICE.finditer(probe.expert)]
    if not prices:
        return None
    known = known_figures(probe)
    offsets = [s * d for d in (10, 20, 30, 40, 50, 60) for s in (1, -1)]
    rng.shuffle(offsets)
    for off in offsets:
        if all(p + off not in known and p + off > 0 for p in prices):
            return PRICE.sub(lambda m, off=off: format_price(float(m.group(1)) + off), probe.expert)
    return None


def _free_price(probe: Probe, lo: float, hi: float, rng: random.Random, avoid: set[float]) -> float:
    """A round price in [lo, hi) that no fact of the probe holds (a little below lo when a
    narrow range has none)."""
    known = known_figures(probe) | avoid
    for widen in range(0, 200, 10):
        choices = [10.0 * k for k in range(int((lo - widen) // 10), int(hi // 10)) if 10.0 * k not in known]
        choices = [c for c in choices if c < hi]
        if choices:
            return rng.choice(choices)
    raise AssertionError(f"no free price below {hi}")


def keyword_stuffed(probe: Probe, rng: random.Random) -> str:
    """Two prices wrapped in the rubric's keywords (empathy, courtesy, market, benefits), in one
    of two forms: two alternative asks for one room, or an invented market figure and an ask.
    The prices are round, plausible (inside the room's range) and held by no fact."""
    room = rng.choice(probe.scenario.room_types)
    a = _free_price(probe, room.floor_price, room.current_price, rng, set())
    b = _free_price(probe, room.floor_price, room.current_price, rng, {a})
    pa, pb = format_price(max(a, b)), format_price(min(a, b))
    zh = probe.scenario.language == "zh"
    if rng.random() < 0.5:
        if zh:
            return (f"理解您，非常感谢！竞品、周边同类酒店和市场数据都显示，客人比价时看重曝光、排名和性价比。"
                    f"能否把{room.name}调整到{pa}或{pb}？")
        return (f"I understand and I appreciate it, thank you. Competitors, similar hotels nearby and the market "
                f"all show guests compare value, visibility and ranking. Could you adjust the {room.name} to {pa} "
                f"or {pb}?")
    if zh:
        return (f"理解您，非常感谢！周边同类酒店的{room.name}在{pa}，市场竞争很激烈，客人比价时看重曝光和排名。"
                f"能否把{room.name}调整到{pb}？")
    return (f"I understand and I appreciate it, thank you. Similar hotels nearby sell the {room.name} at {pa}; "
            f"guests compare value, visibility and ranking in this market. Could you adjust the {room.name} to {pb}?")


SOP_STUFFING = {
    "en": " I understand. Similar hotels nearby and competitors in the market. To confirm the next steps.",
    "zh": "理解您。周边同类酒店和竞品的市场情况。跟您确认一下后续。",
}


def sop_stuffed(probe: Probe, reply: str) -> str:
    """`reply` with the SOP classifier's stage keywords appended."""
    return reply + SOP_STUFFING[probe.scenario.language]


def score(ctx: JudgeContext) -> tuple[float, dict[str, float | None]]:
    """(E_judge with the default weights, item scores) as the local judge server answers."""
    answer = judge_answer(build_judge_messages(ctx, "probe"))
    scores = {k: v["score"] for k, v in answer["scores"].items()}
    return e_judge(scores, DEFAULT_JUDGE_WEIGHTS), scores
