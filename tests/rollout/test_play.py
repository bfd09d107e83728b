"""Multi-turn negotiations (play_negotiations, no Ray) against every hotel persona, plain and GRPO."""

import dataclasses

import pytest

from repo_ray.domain.scenario import Persona, render_system_prompt
from repo_ray.model import IM_END, encode_prompt
from repo_ray.rollout import EndReason, SamplingSettings, play_negotiations
from repo_ray.types import Message, Role

SAMPLING = SamplingSettings(max_new_tokens=12, temperature=1.0, seed=7)


@pytest.fixture(scope="module")
def backend(domain_models, lora_settings):
    from repo_ray.rollout.hf import HFBackend

    return HFBackend(domain_models.policy_dir, domain_models.tokenizer_dir, lora=lora_settings, device="cpu")


def tight_budget(backend, scenarios) -> int:
    """Room for the longest system prompt plus about one exchange: later turns must be trimmed."""
    longest = max(len(encode_prompt(backend.tokenizer, [Message(Role.SYSTEM, render_system_prompt(s))]))
                  for s in scenarios)
    return longest + 2 * SAMPLING.max_new_tokens + 20


def test_rollout_against_each_persona_gives_well_formed_trajectories(backend, persona_scenarios):
    assert {s.persona for s in persona_scenarios} == set(Persona)
    budget = tight_budget(backend, persona_scenarios)
    ids = [f"ep{i}" for i in range(len(persona_scenarios))]
    result = play_negotiations(backend, persona_scenarios, ids, SAMPLING, max_turns=3, max_prompt_tokens=budget)

    trajs = result.trajectories
    assert len({t.sample_id for t in trajs}) == len(trajs)
    assert [e.persona for e in result.episodes] == [s.persona.value for s in persona_scenarios]
    im_end = backend.tokenizer.convert_tokens_to_ids(IM_END)
    by_id = {t.sample_id: t for t in trajs}
    trimmed = 0
    for scenario, ep in zip(persona_scenarios, result.episodes, strict=True):
        mine = [by_id[s] for s in ep.sample_ids]
        assert [t.turn_index for t in mine] == list(range(ep.agent_turns)) and ep.agent_turns >= 1
        assert [t.sample_id for t in mine] == [f"{ep.episode_id}:t{i}" for i in range(ep.agent_turns)]
        assert ep.transcript[0] == Message(Role.SYSTEM, render_system_prompt(scenario))
        assert len(ep.transcript) == 1 + 2 * ep.agent_turns
        if ep.end_reason is EndReason.MAX_TURNS:
            assert ep.agent_turns == 3
        for t in mine:
            dataclasses.replace(t)  # re-runs the Trajectory contract checks
            assert t.scenario_id == scenario.scenario_id and t.group_id is None and t.adapter_version == 0
            assert len(t.response_token_ids) == len(t.response_logprobs) == len(t.response_mask)
            assert set(t.response_mask) == {1}
            assert im_end not in t.response_token_ids[:-1]  # a reply ends at its first <|im_end|>
            assert t.response_token_ids[-1] == im_end or len(t.response_token_ids) == SAMPLING.max_new_tokens
            assert t.truncated == (t.response_token_ids[-1] != im_end)  # cut at the budget, and it says so
            # the context: system prompt whole, then a suffix of the dialogue so far, within budget
            full = ep.transcript[: 1 + 2 * t.turn_index]
            assert t.messages[0] == full[0]
            assert t.messages[1:] == full[len(full) - len(t.messages) + 1 :]
            assert t.prompt_token_ids == encode_prompt(backend.tokenizer, t.messages)
            assert len(t.prompt_token_ids) <= budget
            trimmed += len(t.messages) < len(full)
            # the policy's reply is what the hotel answered
            assert ep.transcript[1 + 2 * t.turn_index] == Message(Role.AGENT, t.response_text)
    assert trimmed >= 3  # the long dialogues were cut by the context policy
    assert result.new_tokens == sum(len(t.response_token_ids) for t in trajs)
    assert result.tokens_per_s > 0


def test_grpo_samples_k_replies_per_context_sharing_group_and_context(backend, persona_scenarios):
    k = 3
    result = play_negotiations(
        backend, persona_scenarios[:2], ["g0", "g1"], SAMPLING, max_turns=2, max_prompt_tokens=4096, group_size=k
    )
    groups: dict[str, list] = {}
    for t in result.trajectories:
        groups.setdefault(t.group_id, []).append(t)
    assert len(result.trajectories) == k * sum(e.agent_turns for e in result.episodes)
    assert len({t.sample_id for t in result.trajectories}) == len(result.trajectories)
    for group_id, members in groups.items():
        assert group_id is not None and len(members) == k
        assert [t.sample_id for t in members] == [f"{group_id}:k{j}" for j in range(k)]
        assert all(t.messages == members[0].messages for t in members)
        assert all(t.prompt_token_ids == members[0].prompt_token_ids for t in members)
        assert len({tuple(t.response_token_ids) for t in members}) > 1  # k different samples
    for ep in result.episodes:  # the dialogue went on with sample k0
        for turn in range(ep.agent_turns):
            k0 = next(t for t in groups[f"{ep.episode_id}:t{turn}"] if t.sample_id.endswith(":k0"))
            assert ep.transcript[1 + 2 * turn].text == k0.response_text


def test_repeated_episode_ids_are_refused(backend, persona_scenarios):
    with pytest.raises(ValueError, match="episode ids repeat"):
        play_negotiations(backend, persona_scenarios[:2], ["x", "x"], SAMPLING, max_turns=1, max_prompt_tokens=4096)
