"""Multi-turn negotiations between a policy (any RolloutBackend) and the hotel simulator,
over a batch of scenarios at once; one `Trajectory` per agent turn. Pure of Ray: the
RolloutWorker actor is a thin shell around `play_negotiations`.

Each round: the context policy trims every still-active dialogue, ONE batched generate
writes the agent's turn for all of them, then each dialogue's HotelSimulator replies. A
dialogue ends when every room type is settled (agreed, or refused for good), when the
hotel ends it (hang-up, or its goodbye after the agent's close), or at `max_turns`.

GRPO (`group_size` k > 1): k replies are sampled from the same context at every agent
turn; all k become trajectories sharing `group_id` and `messages`, and the dialogue
continues with the first sample (k = 0). The other k - 1 are scored in the same context
but never answered by the hotel: each is one agent turn, the unit of reward, and no
credit flows across turns, so their futures are not needed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from repo_ray.domain.scenario import Scenario, render_system_prompt
from repo_ray.domain.simulator import HotelSimulator, HotelTurn
from repo_ray.domain.sop import classify_stage
from repo_ray.hashing import stable_seed
from repo_ray.model.context import fit_prompt
from repo_ray.rollout.backend import RolloutBackend, SamplingSettings
from repo_ray.types import Message, Role, Trajectory


class EndReason(StrEnum):
    """Why a negotiation stopped."""

    DEAL = "deal"  # every room type agreed
    SETTLED = "settled"  # every room type agreed or refused for good, at least one refused
    HOTEL_ENDED = "hotel_ended"  # the hotel hung up or said goodbye
    MAX_TURNS = "max_turns"  # cut off at the turn limit


@dataclass(slots=True)
class EpisodeSummary:
    """What evaluation and metrics need of one played negotiation."""

    episode_id: str
    scenario_id: str
    persona: str
    language: str
    agent_turns: int
    end_reason: EndReason
    agreed: dict[str, float]  # room type -> agreed price (HotelTurn.agreed after the last turn)
    refused: list[str]  # room types the hotel will not move on
    hotel_replied: bool  # the hotel said anything at all (response rate)
    transcript: list[Message]  # the whole dialogue, system prompt first (not trimmed)
    sample_ids: list[str]  # this episode's trajectories, in turn order


@dataclass(slots=True)
class RolloutResult:
    trajectories: list[Trajectory]
    episodes: list[EpisodeSummary]
    generate_s: float = 0.0  # wall time inside backend.generate, all rounds
    new_tokens: int = 0  # response tokens generated (all k samples)
    wall_s: float = 0.0
    context_dropped: int = 0  # agent-turn prompts that lost old turns to max_prompt_tokens (counted, never silent)

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.generate_s if self.generate_s > 0 else 0.0

    @property
    def truncated(self) -> int:
        """Replies cut at max_new_tokens (never silent: each trajectory says so too)."""
        return sum(t.truncated for t in self.trajectories)


@dataclass(slots=True)
class _Dialogue:
    episode_id: str
    scenario: Scenario
    sim: HotelSimulator
    messages: list[Message]
    sample_ids: list[str] = field(default_factory=list)
    last: HotelTurn | None = None
    replied: bool = False
    end: EndReason | None = None


def _end_reason(d: _Dialogue, turn: HotelTurn, stop_when_settled: bool) -> EndReason | None:
    if stop_when_settled:
        rooms = {r.name for r in d.scenario.room_types}
        if set(turn.agreed) == rooms:
            return EndReason.DEAL
        if set(turn.agreed) | set(turn.refused) == rooms:
            return EndReason.SETTLED
    if turn.ended:
        return EndReason.HOTEL_ENDED
    return None


def play_negotiations(
    backend: RolloutBackend,
    scenarios: Sequence[Scenario],
    episode_ids: Sequence[str],
    sampling: SamplingSettings,
    max_turns: int,
    max_prompt_tokens: int,
    group_size: int = 1,
    stop_when_settled: bool = True,
) -> RolloutResult:
    """Play one negotiation per scenario (ids `episode_ids`, unique: they prefix the sample
    ids). With `sampling.seed` set the whole batch is reproducible; each round's generate
    gets its own seed derived from it. `stop_when_settled` False lets the policy go on to
    confirm and close after a deal (the hotel then ends the dialogue on the close)."""
    if len(scenarios) != len(episode_ids):
        raise ValueError(f"{len(scenarios)} scenarios but {len(episode_ids)} episode ids")
    if len(set(episode_ids)) != len(episode_ids):
        raise ValueError("episode ids repeat; sample ids would collide")
    if group_size < 1 or max_turns < 1:
        raise ValueError(f"group_size {group_size} and max_turns {max_turns} must be >= 1")
    started = time.perf_counter()
    dialogues = [
        _Dialogue(
            eid, s, HotelSimulator(s, seed=stable_seed("hotel", eid)), [Message(Role.SYSTEM, render_system_prompt(s))]
        )
        for s, eid in zip(scenarios, episode_ids, strict=True)
    ]
    trajectories: list[Trajectory] = []
    generate_s, new_tokens = 0.0, 0
    context_dropped = 0  # prompts that lost old turns to max_prompt_tokens
    for turn in range(max_turns):
        active = [d for d in dialogues if d.end is None]
        if not active:
            break
        fitted = [fit_prompt(d.messages, backend.tokenizer, max_prompt_tokens) for d in active]
        contexts = [list(f.messages) for f in fitted]
        context_dropped += sum(f.dropped_turns > 0 for f in fitted)
        seed = None if sampling.seed is None else stable_seed("turn", sampling.seed, turn)
        t0 = time.perf_counter()
        samples = backend.generate(contexts, sampling.with_seed(seed), n=group_size)
        call_s = time.perf_counter() - t0
        generate_s += call_s
        version = backend.adapter_version
        timings = {"generate_s": call_s, "generate_rows": float(len(active) * group_size)}
        for d, context, group in zip(active, contexts, samples, strict=True):
            group_id = f"{d.episode_id}:t{turn}" if group_size > 1 else None
            for j, g in enumerate(group):
                sample_id = f"{d.episode_id}:t{turn}" + (f":k{j}" if group_size > 1 else "")
                new_tokens += len(g.token_ids)
                trajectories.append(
                    Trajectory(
                        sample_id=sample_id,
                        scenario_id=d.scenario.scenario_id,
                        turn_index=turn,
                        messages=list(context),
                        response_text=g.text,
                        prompt_token_ids=list(g.prompt_token_ids),
                        response_token_ids=list(g.token_ids),
                        response_logprobs=list(g.logprobs),
                        response_mask=[1] * len(g.token_ids),  # every reply token, <|im_end|> included
                        sop_stage=classify_stage(g.text).value,
                        adapter_version=version,
                        timings=dict(timings),
                        group_id=group_id,
                        truncated=g.truncated,  # cut at max_new_tokens: the `truncated` rule charges it
                    )
                )
                d.sample_ids.append(sample_id)
            reply = group[0].text  # the dialogue goes on with the first sample
            d.messages.append(Message(Role.AGENT, reply))
            hotel = d.sim.reply(reply)
            d.messages.append(Message(Role.HOTEL, hotel.text))
            d.last = hotel
            d.replied |= not hotel.silent
            d.end = _end_reason(d, hotel, stop_when_settled)
    episodes = []
    for d in dialogues:
        last = d.last
        episodes.append(
            EpisodeSummary(
                episode_id=d.episode_id,
                scenario_id=d.scenario.scenario_id,
                persona=d.scenario.persona.value,
                language=d.scenario.language,
                agent_turns=(len(d.messages) - 1) // 2,
                end_reason=d.end or EndReason.MAX_TURNS,
                agreed=dict(last.agreed) if last else {},
                refused=sorted(last.refused) if last else [],
                hotel_replied=d.replied,
                transcript=list(d.messages),
                sample_ids=list(d.sample_ids),
            )
        )
    return RolloutResult(trajectories, episodes, generate_s, new_tokens, time.perf_counter() - started,
                         context_dropped)
