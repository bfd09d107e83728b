"""learner/batch.py: reward selection per mode, masking, and the label-position alignment (CPU, no Ray)."""

from __future__ import annotations

import pytest
import torch

from repo_ray.domain.schemas import load_rows
from repo_ray.learner.batch import (
    collate_dialogues,
    collate_preferences,
    collate_trajectories,
    prepare_rl_batch,
    reward_field,
    select_samples,
)
from repo_ray.learner.trainers import policy_logprobs
from repo_ray.model import load_policy
from repo_ray.model.chat import IM_END
from repo_ray.types import ContractError, Role
from tests.learner.conftest import reward


@pytest.mark.parametrize(
    ("algorithm", "grpo_reward", "field"),
    [("repo", "rm", "r_total"), ("ppo", "rm", "r_model"), ("grpo", "rm", "r_model"), ("grpo", "enhanced", "r_total")],
)
def test_reward_field_per_mode_repo_enhanced_ppo_rm_only_grpo_configurable(algorithm, grpo_reward, field):
    assert reward_field(algorithm, grpo_reward) == field


def test_select_samples_picks_the_mode_reward_and_counts_masked(base_trajectories):
    trajs = base_trajectories[:4]
    results = [reward(trajs[0].sample_id, 1.0, 1.5), reward(trajs[1].sample_id, None),
               reward(trajs[2].sample_id, -2.0, -2.6), reward(trajs[3].sample_id, None)]
    repo = select_samples(list(zip(trajs, results)), "repo")
    ppo = select_samples(list(zip(trajs, results)), "ppo")
    assert [t.sample_id for t in repo.trajectories] == [trajs[0].sample_id, trajs[2].sample_id]
    assert repo.scores == [1.5, -2.6]
    assert ppo.scores == [1.0, -2.0]
    assert repo.masked_ids == [trajs[1].sample_id, trajs[3].sample_id]
    batch, sel = prepare_rl_batch([(trajs[1], results[1])], "repo", "rm", 0)
    assert batch is None and sel.masked_ids == [trajs[1].sample_id]


def test_select_samples_rejects_a_reward_paired_with_another_trajectory(base_trajectories):
    a, b = base_trajectories[:2]
    with pytest.raises(ContractError, match=a.sample_id):
        select_samples([(a, reward(b.sample_id, 1.0))], "repo")


def test_collate_left_pads_prompts_and_right_pads_responses_into_one_window(base_trajectories, learner_tokenizer):
    trajs = base_trajectories[:3]
    batch = collate_trajectories(trajs, [1.0, 2.0, 3.0], learner_tokenizer.pad_token_id)
    width_p = max(len(t.prompt_token_ids) for t in trajs)
    for i, t in enumerate(trajs):
        p, r = len(t.prompt_token_ids), len(t.response_token_ids)
        row = batch.input_ids[i][batch.attention_mask[i].bool()].tolist()
        assert row == t.prompt_token_ids + t.response_token_ids
        # every response starts at column width_p; positions count real tokens only
        assert batch.input_ids[i, width_p:width_p + r].tolist() == t.response_token_ids
        assert batch.position_ids[i, width_p].item() == p
        assert batch.labels[i, :r].tolist() == t.response_token_ids
        assert batch.loss_mask[i].tolist() == [1.0] * r + [0.0] * (batch.window - r)
        assert batch.rollout_logprobs[i, :r].tolist() == pytest.approx(t.response_logprobs, abs=1e-6)
    assert batch.scores.tolist() == [1.0, 2.0, 3.0]
    assert batch.num_tokens == sum(len(t.response_token_ids) for t in trajs)


def test_window_logprobs_match_the_rollout_logprobs_of_each_unpadded_sequence(domain_models, base_trajectories,
                                                                                learner_tokenizer):
    # make_trajectories took the rollout logprobs from one unpadded forward per sequence with full
    # logits; the learner's left-padded, logits_to_keep forward must agree token by token.
    batch = collate_trajectories(base_trajectories, [0.0] * len(base_trajectories), learner_tokenizer.pad_token_id)
    lp = policy_logprobs(load_policy(domain_models.policy_dir), batch)
    assert float(((lp - batch.rollout_logprobs).abs() * batch.loss_mask).max()) < 1e-4
    assert float((lp * (1 - batch.loss_mask)).abs().max()) == 0.0


def test_select_trims_padding_to_the_selected_rows_longest_prompt_and_response(base_trajectories,
                                                                                learner_tokenizer):
    batch = collate_trajectories(base_trajectories, [0.0] * len(base_trajectories), learner_tokenizer.pad_token_id)
    i = int((batch.prompt_lengths + batch.window_lengths).argmin())
    sub = batch.select([i])
    t = base_trajectories[i]
    assert sub.input_ids[0].tolist() == t.prompt_token_ids + t.response_token_ids  # no padding left
    assert sub.labels[0].tolist() == t.response_token_ids
    assert sub.num_tokens == len(t.response_token_ids)


def test_sft_rows_train_only_on_agent_turn_tokens(data_dir, learner_tokenizer):
    dialogue = load_rows("sft", data_dir).rows[0]
    batch = collate_dialogues([dialogue], learner_tokenizer, max_tokens=4096)
    trained = batch.labels[0][batch.loss_mask[0].bool()].tolist()
    im_end = learner_tokenizer.convert_tokens_to_ids(IM_END)
    agent_turns = [m.text for m in dialogue.messages if m.role is Role.AGENT]
    assert trained.count(im_end) == len(agent_turns)  # every reply ends with its <|im_end|>, nothing else trained
    text = learner_tokenizer.decode(trained)
    for m in dialogue.messages:
        if m.role is Role.AGENT:
            assert m.text in text
        elif m.role is Role.HOTEL and m.text.strip():
            assert m.text not in text


def test_preference_rows_hold_chosen_then_rejected_with_the_reply_kept_whole(data_dir, learner_tokenizer):
    pairs = load_rows("preference", data_dir).rows[:2]
    batch = collate_preferences(pairs, learner_tokenizer, max_tokens=512)  # above the system prompt (never cut)
    assert batch.size == 4
    assert batch.sample_ids == [f"{pairs[0].pair_id}:chosen", f"{pairs[1].pair_id}:chosen",
                                f"{pairs[0].pair_id}:rejected", f"{pairs[1].pair_id}:rejected"]
    chosen0 = learner_tokenizer.decode(batch.labels[0][batch.loss_mask[0].bool()].tolist())
    assert pairs[0].chosen in chosen0
    assert int(batch.attention_mask.sum(-1).max()) <= max(512, int(batch.loss_mask.sum(-1).max()) + 1)
    assert torch.equal(batch.loss_mask.sum(-1) > 0, torch.ones(4, dtype=torch.bool))
