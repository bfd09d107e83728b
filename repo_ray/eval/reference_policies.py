"""Hand-made reference policies for the yardstick: the data generator's scripted expert (the
ceiling row of every report) and three spoilt copies whose order on the rating is obvious.
Each is a `RolloutBackend` (repo_ray/rollout/backend.py), so the evaluation harness plays and
scores it exactly as it plays a model: same simulator, same judge, same guardrails.

- `ExpertPolicy`: `repo_ray.domain.agent.ExpertAgent`, seeded and worded as the data
  generator seeds it. Before each turn it replays the dialogue so far against its own copy of
  the (deterministic) hotel simulator, fed with the agent messages actually sent, so its
  state is exact whatever context it is handed (a dialogue it played, or a bad case's).
- `ShiftedPriceExpert`: the expert with every price it writes shifted up by `shift` (8%):
  its market evidence and confirmations become invented figures, and its asks land above
  target (worse deals).
- `InventedNumberExpert`: the expert plus one invented figure per turn.
- `GoodbyePolicy`: says goodbye at once (the hotel then ends the dialogue).

Expected order on the rating: expert > shifted >= invented > goodbye (tests/eval pin it).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from repo_ray.domain.agent import ExpertAgent, agent_line
from repo_ray.domain.scenario import Scenario, format_price, render_system_prompt
from repo_ray.domain.simulator import HotelSimulator, HotelTurn, round_to
from repo_ray.types import AdapterAck, AdapterUpdate, Message, Role

if TYPE_CHECKING:
    from repo_ray.rollout.backend import Generation, SamplingSettings


class ScriptedTokenizer:
    """What the harness's context policy asks of a tokenizer, for a policy that reads text:
    one "token" per message, so a scripted policy always sees the whole dialogue."""

    name_or_path = "scripted"

    def apply_chat_template(self, messages, add_generation_prompt: bool = True, tokenize: bool = True,
                            return_dict: bool = False) -> list[int]:
        return [0] * (len(messages) + int(add_generation_prompt))


class ScriptedPolicy:
    """A RolloutBackend whose replies are a pure function of the scenario and the dialogue."""

    name = "scripted"

    def __init__(self, scenarios: Iterable[Scenario] = ()) -> None:
        self._tokenizer = ScriptedTokenizer()
        self._by_prompt: dict[str, Scenario] = {}
        for s in scenarios:
            self._by_prompt.setdefault(render_system_prompt(s), s)

    @property
    def tokenizer(self) -> ScriptedTokenizer:
        return self._tokenizer

    @property
    def adapter_version(self) -> int:
        return 0

    def load_adapter(self, update: AdapterUpdate, worker_id: str) -> AdapterAck:
        raise TypeError(f"{type(self).__name__} is scripted: it has no adapter to load")

    def scenario_of(self, history: Sequence[Message]) -> Scenario:
        if not history or history[0].role is not Role.SYSTEM or history[0].text not in self._by_prompt:
            raise KeyError(f"{type(self).__name__}: a context whose scenario it was not given")
        return self._by_prompt[history[0].text]

    def reply(self, scenario: Scenario, history: Sequence[Message]) -> str:
        raise NotImplementedError

    def generate(self, histories: Sequence[Sequence[Message]], sampling: SamplingSettings,
                 n: int = 1) -> list[list[Generation]]:
        from repo_ray.rollout.backend import Generation  # the rollout package stays out of report-only imports

        out = []
        for h in histories:
            text = self.reply(self.scenario_of(h), h)
            # one placeholder token (a certain "stop"): the trajectory contract wants ids, nothing trains on them
            out.append([Generation(text, [0], [0], [0.0], "stop") for _ in range(n)])
        return out


class ExpertPolicy(ScriptedPolicy):
    """The data generator's scripted expert (module docstring). `hotel_seeds` gives the hotel
    simulator's seed per scenario id (the harness's episode seed); other scenarios (bad cases)
    use `default_seed`, the data seed their contexts were generated with."""

    name = "expert"

    def __init__(self, scenarios: Iterable[Scenario], hotel_seeds: Mapping[str, int] | None = None,
                 default_seed: int = 0) -> None:
        super().__init__(scenarios)
        self.hotel_seeds = dict(hotel_seeds or {})
        self.default_seed = default_seed
        self.replay_mismatches = 0  # contexts whose hotel lines the replay did not reproduce (economics still read)

    def _agent(self, scenario: Scenario, seed: int) -> ExpertAgent:
        rng = random.Random(f"expert:{seed}:{scenario.scenario_id}")  # as datagen.play_expert_dialogue
        return ExpertAgent(scenario, rng, rng.choice(["short", "long"]))

    def state(self, scenario: Scenario, history: Sequence[Message]) -> tuple[ExpertAgent, HotelTurn | None]:
        """The expert just before its next turn: it decides at every earlier agent turn (its
        state advances) while the hotel answers what was actually said."""
        seed = self.hotel_seeds.get(scenario.scenario_id, self.default_seed)
        agent, sim = self._agent(scenario, seed), HotelSimulator(scenario, seed=seed)
        msgs = [m for m in history if m.role is not Role.SYSTEM]
        last: HotelTurn | None = None
        mismatch = False
        for i, m in enumerate(msgs):
            if m.role is not Role.AGENT:
                continue
            agent.next_turn(last)
            if sim.ended:
                break
            last = sim.reply(m.text)
            mismatch |= i + 1 < len(msgs) and msgs[i + 1].text != last.text
        self.replay_mismatches += mismatch
        return agent, last

    def expert_reply(self, scenario: Scenario, history: Sequence[Message]) -> str:
        agent, last = self.state(scenario, history)
        turn = agent.next_turn(last)
        if turn is None:  # it had closed already: close again, politely
            return agent_line(scenario.language, "close_no_deal", "short", random.Random(scenario.scenario_id))
        return turn.text

    def reply(self, scenario: Scenario, history: Sequence[Message]) -> str:
        return self.expert_reply(scenario, history)


_PRICE = re.compile(r"¥(\d+(?:\.\d+)?)")


class ShiftedPriceExpert(ExpertPolicy):
    """The expert with every price it writes shifted by `shift` (rounded down to 10)."""

    name = "expert_shifted"
    shift = 0.08

    def reply(self, scenario: Scenario, history: Sequence[Message]) -> str:
        return _PRICE.sub(lambda m: format_price(round_to(float(m.group(1)) * (1 + self.shift))),
                          self.expert_reply(scenario, history))


class InventedNumberExpert(ExpertPolicy):
    """The expert plus one invented figure per turn (a number in none of the scenario's facts)."""

    name = "expert_invented"

    def reply(self, scenario: Scenario, history: Sequence[Message]) -> str:
        text = self.expert_reply(scenario, history)
        taken = scenario.allowed_numbers()
        rng = random.Random(f"invented:{scenario.scenario_id}:{len(history)}")
        k = next(x for x in (rng.randint(11, 97) for _ in range(200)) if float(x) not in taken)
        if scenario.language == "zh":
            return f"{text}上周{scenario.city}有{k}家酒店调了价。"
        return f"{text} Last week {k} hotels in {scenario.city} changed their prices."


class GoodbyePolicy(ScriptedPolicy):
    """Ends the dialogue at once: a goodbye at every turn (the hotel hangs up after the first)."""

    name = "goodbye"

    def __init__(self, scenarios: Iterable[Scenario], hotel_seeds: Mapping[str, int] | None = None,
                 default_seed: int = 0) -> None:
        super().__init__(scenarios)

    def reply(self, scenario: Scenario, history: Sequence[Message]) -> str:
        return "感谢您的时间，再见。" if scenario.language == "zh" else "Thank you for your time, goodbye."


REFERENCE_POLICIES: dict[str, type[ScriptedPolicy]] = {
    p.name: p for p in (ExpertPolicy, ShiftedPriceExpert, InventedNumberExpert, GoodbyePolicy)
}
EXPERT_ROW = ExpertPolicy.name  # the ceiling row's name in every report
