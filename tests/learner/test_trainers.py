"""learner/trainers.py on CPU without Ray or DeepSpeed: the same step functions the
DeepSpeed ranks run, driven through a plain torch AdamW (TorchEngine)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from repo_ray.config import config_from_dict
from repo_ray.domain.schemas import load_rows
from repo_ray.errors import ConfigError
from repo_ray.learner.batch import collate_dialogues, collate_preferences, prepare_rl_batch
from repo_ray.learner.models import build_policy, build_value_model, trainable_state
from repo_ray.learner.trainers import (
    RLSettings,
    RLStepStats,
    TorchEngine,
    dpo_margin,
    dpo_step,
    micro_batches,
    policy_logprobs,
    pre_update_pass,
    rl_step,
    sft_loss,
    sft_step,
    shaped_rewards,
    summarize_rl,
    summarize_supervised,
    warmup_factor,
)
from repo_ray.model import load_policy
from repo_ray.types import Message, Role
from tests.learner.conftest import learner_config, make_trajectories, reward


def engines(domain_models, cfg, with_value=True):
    gas = cfg.grad_accumulation_steps
    policy = TorchEngine(build_policy(domain_models.policy_dir, cfg.lora), cfg.optimizer.lr, cfg.optimizer, gas)
    value = None
    if with_value:
        model = build_value_model(domain_models.policy_dir, cfg.lora)
        value = TorchEngine(model, cfg.ppo.value_lr or cfg.optimizer.lr, cfg.optimizer, gas)
    return policy, value


def rl_batch(trajs, scores, algorithm, pad_id, r_model=None):
    pairs = [(t, reward(t.sample_id, r_model[i] if r_model else s, s)) for i, (t, s) in enumerate(zip(trajs, scores))]
    batch, sel = prepare_rl_batch(pairs, algorithm, "rm", pad_id)
    return batch, len(sel.masked_ids)


def run(policy, value, batch, cfg, algorithm, masked=0):
    return summarize_rl(algorithm, [rl_step(policy, value, batch, RLSettings.from_config(cfg, algorithm))], masked, 0.0,
                        RLSettings.from_config(cfg, algorithm).kl_coef)


def sequence_logprob(module, batch):
    return policy_logprobs(module, batch).sum(-1)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["positive", "negative"])
def test_repo_step_raises_logprobs_with_positive_advantages_and_lowers_them_with_negative(
        domain_models, base_trajectories, learner_tokenizer, sign):
    # Zero value head: V = 0, so with a +-5 reward every GAE advantage has the reward's sign
    # (whitening would re-centre a one-signed batch, so it is off here).
    cfg = learner_config()
    cfg.ppo.whiten_advantages = False
    policy, value = engines(domain_models, cfg)
    batch, _ = rl_batch(base_trajectories, [5.0 * sign] * 8, "repo", learner_tokenizer.pad_token_id)
    before = sequence_logprob(policy.module, batch)
    m = run(policy, value, batch, cfg, "repo")
    delta = sequence_logprob(policy.module, batch) - before
    assert m.mean_advantage * sign > 0 and m.optimizer_steps == 1 and m.kl_penalty == 0.0
    assert bool((delta * sign > 0).all()), delta
    assert float(delta.mean()) * sign > 0.05


def test_repo_gae_and_clipped_value_loss_drive_the_value_loss_down_on_a_fixed_batch(
        domain_models, base_trajectories, learner_tokenizer):
    cfg = learner_config()
    cfg.ppo.value_lr = 1e-2
    policy, value = engines(domain_models, cfg)
    batch, _ = rl_batch(base_trajectories, [2.0, -1.0] * 4, "repo", learner_tokenizer.pad_token_id)
    losses = [run(policy, value, batch, cfg, "repo").value_loss for _ in range(4)]
    assert losses[0] > 0.1
    assert losses[-1] < 0.85 * losses[0], losses
    assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_ppo_kl_to_the_sft_reference_is_zero_before_an_update_and_positive_after(
        domain_models, base_trajectories, learner_tokenizer):
    cfg = learner_config()
    cfg.ppo.kl_coef = 0.1
    policy, value = engines(domain_models, cfg)
    batch, _ = rl_batch(base_trajectories, [0.0] * 8, "ppo", learner_tokenizer.pad_token_id,
                        r_model=[1.0, -1.0] * 4)
    first = run(policy, value, batch, cfg, "ppo")
    second = run(policy, value, batch, cfg, "ppo")
    assert first.mean_reward == 0.0  # ppo trains on r_model (mean 0 here), not on r_total
    assert first.kl_to_sft == 0.0 and first.kl_penalty == 0.0  # fresh LoRA (B = 0) == the reference
    assert second.kl_to_sft > 1e-6
    assert second.kl_penalty == pytest.approx(0.1 * second.kl_to_sft)


def test_ppo_kl_penalty_is_spread_over_response_tokens_and_the_reward_sits_on_the_last():
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 0]], dtype=torch.float32)
    kl = torch.full((2, 5), 0.5)
    r = shaped_rewards(torch.tensor([2.0, -1.0]), mask, kl, 0.1)
    expected = torch.tensor([[0, -0.05, -0.05, 1.95, 0], [0, 0, -0.05, -1.05, 0]])
    assert torch.allclose(r, expected, atol=1e-6), r
    assert shaped_rewards(torch.tensor([2.0, -1.0]), mask, kl, 0.0)[0].tolist() == [0, 0, 0, 2.0, 0]


def test_grpo_step_uses_group_relative_advantages_without_a_value_model(
        domain_models, turns, learner_tokenizer):
    # Two groups of four replies to one context each (the k samples GRPO draws per turn).
    group_turns = [(turns[g * 4][0], turns[g * 4 + k][1]) for g in range(2) for k in range(4)]
    trajs = make_trajectories(load_policy(domain_models.policy_dir), learner_tokenizer, group_turns, group_size=4,
                              prefix="grpo")
    cfg = learner_config()
    policy, _ = engines(domain_models, cfg, with_value=False)
    batch, _ = rl_batch(trajs, [1.0, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0], "grpo",
                        learner_tokenizer.pad_token_id)
    before = sequence_logprob(policy.module, batch)
    m = run(policy, None, batch, cfg, "grpo")
    delta = sequence_logprob(policy.module, batch) - before
    assert m.value_loss is None and m.value_grad_norm is None
    assert float(delta[3]) > 0 > float(delta[0])  # best of its group up, worst down
    assert float(delta[4:].abs().max()) < float(delta[:4].abs().max())  # equal rewards: advantage 0


def test_masked_samples_stay_out_of_the_loss_and_are_counted(domain_models, base_trajectories, learner_tokenizer):
    cfg = learner_config()
    policy, value = engines(domain_models, cfg)
    pairs = [(t, reward(t.sample_id, None if i % 4 == 0 else 1.0)) for i, t in enumerate(base_trajectories)]
    batch, sel = prepare_rl_batch(pairs, "repo", "rm", learner_tokenizer.pad_token_id)
    m = run(policy, value, batch, cfg, "repo", masked=len(sel.masked_ids))
    assert m.masked == 2 and m.samples == 6
    assert m.tokens == sum(len(t.response_token_ids) for i, t in enumerate(base_trajectories) if i % 4)


def test_gradient_accumulation_split_gives_the_same_update_as_one_micro_batch(
        domain_models, base_trajectories, learner_tokenizer):
    batch, _ = rl_batch(base_trajectories, [3.0, -2.0, 1.0, 0.5] * 2, "repo", learner_tokenizer.pad_token_id)
    weights = []
    for micro in (8, 2):  # gas 1 vs gas 4: token-level normalisation over the whole batch
        cfg = learner_config(micro_batch_size=micro)
        policy, value = engines(domain_models, cfg)
        m = run(policy, value, batch, cfg, "repo")
        assert m.optimizer_steps == 1
        weights.append(trainable_state(policy.module))
    assert max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0]) < 1e-5
    assert max(float(w.abs().max()) for k, w in weights[0].items() if "lora_B" in k) > 1e-3  # it did move


def test_micro_batches_always_give_gas_chunks_so_ranks_step_together_grouped_by_length():
    assert micro_batches([0, 2, 4, 6, 8], 2) == [[0, 2, 4], [6, 8]]
    assert micro_batches([1], 3) == [[1], [], []]
    assert micro_batches([], 2) == [[], []]
    assert micro_batches([0, 1, 2, 3], 2, lengths=[90, 10, 80, 20]) == [[1, 3], [2, 0]]  # short rows together


def test_warmup_is_linear_over_the_configured_optimizer_steps():
    f = warmup_factor(4)
    assert [f(k) for k in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0)(0) == 1.0


def test_sft_on_generated_dialogues_lowers_the_agent_turn_loss(domain_models, data_dir, learner_tokenizer):
    cfg = learner_config(optimizer={"lr": 1e-2, "warmup_steps": 1})
    policy, _ = engines(domain_models, cfg, with_value=False)
    # Real expert dialogues with a one-line system prompt, so 4 of them fit in ~200 tokens each.
    dialogues = [dataclasses.replace(d, messages=(Message(Role.SYSTEM, f"Call {d.scenario.hotel_name}."),
                                                  *d.messages[1:]))
                 for d in load_rows("sft", data_dir).rows[:4]]
    batch = collate_dialogues(dialogues, learner_tokenizer, max_tokens=200)
    assert batch.num_tokens > 200
    before = sft_loss(policy.module, batch)
    metrics = [summarize_supervised("sft", [sft_step(policy, batch)], 0.0) for _ in range(4)]
    after = sft_loss(policy.module, batch)
    losses = [m.loss for m in metrics] + [after]
    assert metrics[0].loss == pytest.approx(before, rel=1e-4)  # the first step's loss is the pre-update loss
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert after < before - 0.05, losses
    assert metrics[0].lr == pytest.approx(1e-2) and metrics[0].tokens == batch.num_tokens


def test_dpo_raises_the_chosen_vs_rejected_margin_against_the_adapter_disabled_reference(
        domain_models, data_dir, learner_tokenizer):
    cfg = learner_config(optimizer={"lr": 1e-2, "warmup_steps": 0})
    policy, _ = engines(domain_models, cfg, with_value=False)
    # 512: above the test tokenizer's system prompts (up to ~380 tokens), which are never cut
    batch = collate_preferences(load_rows("preference", data_dir).rows[:8], learner_tokenizer, max_tokens=512)
    assert dpo_margin(policy.module, batch, beta=0.1) == 0.0  # policy == reference before training
    metrics = [summarize_supervised("dpo", [dpo_step(policy, batch, beta=0.1)], 0.0) for _ in range(3)]
    assert dpo_margin(policy.module, batch, beta=0.1) > 0.05
    assert metrics[-1].loss < metrics[0].loss


def test_rl_settings_take_the_advantage_estimator_by_name_from_the_config():
    cfg = learner_config()
    assert RLSettings.from_config(cfg, "repo").advantage_estimator == "gae"
    assert RLSettings.from_config(cfg, "grpo").advantage_estimator == "grpo"


@pytest.mark.parametrize(("name", "reason"), [("vtrace", "unknown advantage estimator 'vtrace'; known: gae, grpo"),
                                              ("grpo", "'grpo' uses no value model")])
def test_a_wrong_advantage_estimator_is_a_config_error_naming_the_field(name, reason):
    with pytest.raises(ConfigError, match=rf"learner\.ppo\.advantage_estimator: {reason}"):
        config_from_dict({"learner": {"ppo": {"advantage_estimator": name}}})


def settings(cfg, algorithm="repo", **changes):
    return dataclasses.replace(RLSettings.from_config(cfg, algorithm), **changes)


def step(policy, value, batch, s):
    return summarize_rl(s.algorithm, [rl_step(policy, value, batch, s)], 0, 0.0, s.kl_coef)


def on_policy(batch, module, gas):
    """The batch with its rollout logprobs replaced by the learner's own, computed on the
    very micro-batches rl_step will form (so the numbers match to the bit)."""
    lp = batch.rollout_logprobs.clone()
    for rows in micro_batches(list(range(batch.size)), gas, (batch.prompt_lengths + batch.window_lengths).tolist()):
        if rows:
            lp[rows, :batch.select(rows).window] = policy_logprobs(module, batch.select(rows))
    return dataclasses.replace(batch, rollout_logprobs=lp)


def test_on_policy_importance_weights_are_one_and_the_update_equals_the_uncorrected_one(
        domain_models, base_trajectories, learner_tokenizer):
    cfg = learner_config()
    batch, _ = rl_batch(base_trajectories, [3.0, -2.0, 1.0, 0.5] * 2, "repo", learner_tokenizer.pad_token_id)
    out = {}
    for correction in ("decoupled", "none"):
        policy, value = engines(domain_models, cfg)
        b = on_policy(batch, policy.module, policy.gradient_accumulation_steps)
        out[correction] = (step(policy, value, b, settings(cfg, off_policy_correction=correction)),
                           trainable_state(policy.module))
    m = out["decoupled"][0]
    assert m.is_weight_min == m.is_weight_max == m.is_weight_mean == 1.0 and m.is_capped_fraction == 0.0
    assert m.logprob_mismatch == 0.0 and m.policy_loss == out["none"][0].policy_loss
    assert all(torch.equal(w, out["none"][1][k]) for k, w in out["decoupled"][1].items())


def test_a_stale_batch_gets_importance_weights_off_one_reported_and_applied(
        domain_models, base_trajectories, learner_tokenizer):
    # The batch's logprobs are the base policy's; after one update the learner's policy is
    # a version ahead, as for a stale sample in async mode.
    cfg = learner_config()
    batch, _ = rl_batch(base_trajectories, [3.0, -2.0, 1.0, 0.5] * 2, "repo", learner_tokenizer.pad_token_id)
    out = {}
    cap = None
    for correction in ("none", "decoupled"):
        policy, value = engines(domain_models, cfg)
        step(policy, value, batch, settings(cfg, off_policy_correction="none"))  # the same first update
        out[correction] = step(policy, value, batch, settings(cfg, off_policy_correction=correction,
                                                              is_cap=cap or 5.0))
        # the cap halfway between 1 and the largest weight: some tokens above it, some below
        cap = 1.0 + (out[correction].is_weight_max - 1.0) / 2 if out[correction].is_weight_max > 1.0 else 1.05
    m, plain = out["decoupled"], out["none"]
    assert m.logprob_mismatch > 1e-3
    assert m.is_weight_min < 1.0 < m.is_weight_max and m.is_weight_mean != 1.0
    assert 0.0 < m.is_capped_fraction < 1.0  # tokens likelier now than the cap allows were dropped
    assert m.is_weight_mean == plain.is_weight_mean and plain.is_capped_fraction == 0.0  # none caps nothing
    assert abs(m.policy_loss - plain.policy_loss) > 1e-6  # the weights entered the loss


def test_ppo_reward_penalty_is_k1_per_token_not_the_logged_estimator(
        domain_models, base_trajectories, learner_tokenizer):
    cfg = learner_config()
    cfg.ppo.kl_coef = 0.1
    policy, value = engines(domain_models, cfg)
    batch, _ = rl_batch(base_trajectories, [0.0] * 8, "ppo", learner_tokenizer.pad_token_id, r_model=[1.0, -1.0] * 4)
    s = settings(cfg, "ppo")
    step(policy, value, batch, s)  # move the policy off the reference
    mb = batch.select([0, 1, 2, 3])
    p = pre_update_pass(policy, value, mb, [0, 1, 2, 3], s, RLStepStats())
    k1 = p.old_lp - p.ref_lp
    expected = shaped_rewards(mb.scores, mb.loss_mask, k1, 0.1)
    assert s.kl_estimator == "k3" and float((k1 * mb.loss_mask).min()) < 0  # k1 can be negative, k3 never
    assert torch.allclose(p.token_rewards, expected, atol=1e-7)


def test_importance_weight_stats_combine_over_ranks_and_an_empty_rank_changes_nothing():
    ranks = [RLStepStats(tokens=4, is_weight=4.4, is_weight_min=0.9, is_weight_max=1.5, is_capped=1),
             RLStepStats(tokens=6, is_weight=6.0, is_weight_min=0.8, is_weight_max=1.2), RLStepStats()]
    m = summarize_rl("repo", ranks, 0, 0.0)
    assert (m.is_weight_mean, m.is_weight_min, m.is_weight_max) == (pytest.approx(1.04), 0.8, 1.5)
    assert m.is_capped_fraction == pytest.approx(0.1)
    empty = summarize_rl("repo", [RLStepStats()], 0, 0.0)
    assert (empty.is_weight_mean, empty.is_weight_min, empty.is_weight_max, empty.is_capped_fraction) == (1, 1, 1, 0)


def test_gradient_checkpointing_recomputes_the_blocks_and_gives_the_same_update(domain_models, base_trajectories,
                                                                                  learner_tokenizer):
    cfg = learner_config()
    batch, _ = rl_batch(base_trajectories, [3.0, -2.0, 1.0, 0.5, -1.0, 2.0, 0.0, 4.0], "repo",
                        learner_tokenizer.pad_token_id)
    gas = cfg.grad_accumulation_steps
    states, block_calls = {}, {}
    for on in (False, True):
        policy_model = build_policy(domain_models.policy_dir, cfg.lora, gradient_checkpointing=on)
        value_model = build_value_model(domain_models.policy_dir, cfg.lora, gradient_checkpointing=on)
        assert policy_model.base_model.model.is_activation_checkpointing is on
        assert value_model.body.base_model.model.is_activation_checkpointing is on
        calls: list[bool] = []
        # inside the block (its own hooks stay outside the checkpoint), before anything it saves: the
        # recompute runs it again (and stops once the saved tensors are back, so a post-hook may not)
        attn = policy_model.base_model.model.model.layers[0].self_attn
        attn.register_forward_pre_hook(lambda *_, seen=calls: seen.append(torch.is_grad_enabled()))
        policy = TorchEngine(policy_model, cfg.optimizer.lr, cfg.optimizer, gas)
        value = TorchEngine(value_model, cfg.ppo.value_lr or cfg.optimizer.lr, cfg.optimizer, gas)
        run(policy, value, batch, cfg, "repo")
        value_state = {f"v.{k}": v for k, v in trainable_state(value.module).items()}
        states[on] = {**trainable_state(policy.module), **value_state}
        block_calls[on] = len(calls)
    assert block_calls[True] > block_calls[False]  # the backward pass ran the block again
    assert max(float((states[True][k] - states[False][k]).abs().max()) for k in states[False]) < 1e-6
