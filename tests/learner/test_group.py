"""The learner group on local Ray with real DeepSpeed engines on CPU (gloo).

One module-scoped scenario shares its actors across the tests (each DeepSpeed rank is a
fresh process): a world-size-1 (ZeRO 0) and a world-size-2 (ZeRO 2) REPO group train on
the same batch, rank 0 publishes an adapter, the world-2 group checkpoints, both take a
second step, and the world-1 group reloads that checkpoint and retakes the second step.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from repo_ray.config import RepoRayConfig
from repo_ray.domain.schemas import load_rows
from repo_ray.errors import ModelLoadError
from repo_ray.learner.models import build_policy
from repo_ray.model import load_policy, merge_adapter
from repo_ray.model.adapters import load_adapter_update, probe_logprob
from repo_ray.pipeline.placement import start_learner_group
from repo_ray.types import Message, Role
from tests.learner.conftest import LORA, learner_config, reward

# Adam normalises each gradient element by its own running scale, so float summation-order
# noise in a near-zero gradient element shows up in the update; 1e-5 is 0.2 % of the test
# lr (5e-3), far below what a real difference (a lost moment, a wrong token weight) gives.
TOL = 1e-5


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def scenario(ray_local, domain_models, base_trajectories, learner_tokenizer, tmp_path_factory):
    batch = [(t, reward(t.sample_id, r)) for t, r in zip(base_trajectories, [3.0, -2.0, 1.0, 0.5, -1.0, 2.0, 0.0, 4.0])]
    batch[5] = (base_trajectories[5], reward(base_trajectories[5].sample_id, None))  # masked: out of the loss
    probe = learner_tokenizer.encode("Hello, could the Deluxe King be 820 per night?")
    groups = {}
    try:
        for world, zero in ((1, 0), (2, 2)):
            cfg = RepoRayConfig(seed=3, learner=learner_config(world_size=world, zero_stage=zero,
                                                               micro_batch_size=4 // world))
            groups[world] = start_learner_group(cfg, domain_models.policy_dir, domain_models.tokenizer_dir,
                                                name=f"test-learner-w{world}")
        out = {"groups": groups, "probe": probe, "ckpt": tmp_path_factory.mktemp("learner-ckpt")}
        out["step1"] = {w: g.train_step(batch) for w, g in groups.items()}
        out["weights1"] = {w: g.trainable_weights() for w, g in groups.items()}
        out["update"] = groups[2].publish_adapter(1, probe)
        groups[2].save_checkpoint(out["ckpt"])
        out["step2"] = {w: g.train_step(batch) for w, g in groups.items()}
        out["weights2"] = {w: g.trainable_weights() for w, g in groups.items()}
        out["resumed_at"] = groups[1].load_checkpoint(out["ckpt"])
        out["weights_loaded"] = groups[1].trainable_weights()
        groups[1].train_step(batch)
        out["weights_resumed"] = groups[1].trainable_weights()
        yield out
    finally:
        for g in groups.values():
            g.shutdown()


def test_world_size_1_and_2_give_the_same_update_on_the_same_batch(scenario):
    w1, w2 = scenario["weights1"][1][0], scenario["weights1"][2][0]
    assert max_diff(w1["policy"], w2["policy"]) < TOL
    assert max_diff(w1["value"], w2["value"]) < TOL
    moved = max(float(v.abs().max()) for k, v in w1["policy"].items() if "lora_B" in k)
    assert moved > 1e-3  # B starts at zero: the step really changed the adapter
    m1, m2 = scenario["step1"][1], scenario["step1"][2]
    assert m1.samples == m2.samples == 7 and m1.masked == m2.masked == 1
    assert m1.tokens == m2.tokens
    for name in ("policy_loss", "value_loss", "grad_norm", "value_grad_norm", "entropy", "mean_reward"):
        assert getattr(m1, name) == pytest.approx(getattr(m2, name), rel=1e-4, abs=1e-6), name
    assert m1.kl_to_sft == 0.0 and m1.logprob_mismatch < 1e-4  # the old logprobs the learner recomputed


def test_ranks_of_the_world_size_2_group_hold_identical_weights_after_each_step(scenario):
    for key in ("weights1", "weights2"):
        rank0, rank1 = scenario[key][2]
        assert max_diff(rank0["policy"], rank1["policy"]) == 0.0
        assert max_diff(rank0["value"], rank1["value"]) == 0.0


def test_published_adapter_round_trips_into_a_freshly_loaded_model(scenario, domain_models):
    update = scenario["update"]
    model = build_policy(domain_models.policy_dir, LORA)
    base_probe = probe_logprob(model, update.probe_token_ids)
    ack = load_adapter_update(model, update, "test-worker")
    update.verify_ack(ack, logprob_tolerance=1e-6)
    assert ack.probe_logprob == pytest.approx(probe_logprob(model, update.probe_token_ids), abs=1e-9)
    assert abs(update.probe_logprob - base_probe) > 1e-4  # the trained adapter, not the fresh one
    assert update.version == 1 and tuple(scenario["probe"]) == update.probe_token_ids


def test_checkpoint_holds_only_safetensors_and_json(scenario):
    files = sorted(str(p.relative_to(scenario["ckpt"])) for p in Path(scenario["ckpt"]).rglob("*") if p.is_file())
    assert files == ["learner_state.json", "optimizer_policy.safetensors", "optimizer_value.safetensors",
                     "policy/adapter_config.json", "policy/adapter_model.safetensors", "value.safetensors"]


def test_checkpoint_policy_dir_merges_into_a_model_with_the_published_probe_logprob(scenario, domain_models,
                                                                                    tmp_path):
    # The SFT stage's path: checkpoint -> merge_adapter -> RUN/sft/model (saved right after publishing).
    merged = merge_adapter(domain_models.policy_dir, Path(scenario["ckpt"]) / "policy", tmp_path / "merged")
    update = scenario["update"]
    assert probe_logprob(load_policy(merged), update.probe_token_ids) == pytest.approx(update.probe_logprob,
                                                                                       abs=1e-4)


def test_checkpoint_restores_weights_and_adam_state_across_world_size_and_zero_stage(scenario):
    # Saved by the world-2 / ZeRO-2 group after step 1, loaded by the world-1 / ZeRO-0 group
    # after its step 2: it returns to the step-1 weights, and its retaken step 2 matches the
    # world-2 group's (which needs the restored Adam moments and step count).
    assert scenario["resumed_at"] == 1
    loaded, step1 = scenario["weights_loaded"][0], scenario["weights1"][2][0]
    assert max_diff(loaded["policy"], step1["policy"]) == 0.0
    assert max_diff(loaded["value"], step1["value"]) == 0.0
    resumed, step2 = scenario["weights_resumed"][0], scenario["weights2"][2][0]
    assert max_diff(resumed["policy"], step2["policy"]) < TOL
    assert max_diff(resumed["value"], step2["value"]) < TOL
    assert max_diff(step2["policy"], step1["policy"]) > 1e-4


def test_sft_and_dpo_entry_points_train_through_the_group(ray_local, domain_models, data_dir):
    dialogues = [dataclasses.replace(d, messages=(Message(Role.SYSTEM, f"Call {d.scenario.hotel_name}."),
                                                  *d.messages[1:]))
                 for d in load_rows("sft", data_dir).rows[:4]]
    pairs = load_rows("preference", data_dir).rows[:4]
    learner = learner_config(batch_size=4, micro_batch_size=2, optimizer={"lr": 1e-2, "warmup_steps": 0})
    learner.sft.max_tokens, learner.dpo.max_tokens = 200, 512  # DPO rows keep their (real) system prompt whole
    cfg = RepoRayConfig(learner=learner)
    for mode, rows in (("sft", dialogues), ("dpo", pairs)):
        group = start_learner_group(cfg, domain_models.policy_dir, domain_models.tokenizer_dir, mode=mode,
                                    name=f"test-learner-{mode}")
        try:
            metrics = getattr(group, mode)(rows, epochs=3)
        finally:
            group.shutdown()
        assert len(metrics) == 3 and all(m.mode == mode and m.rows == 4 for m in metrics)
        assert metrics[-1].loss < metrics[0].loss, [m.loss for m in metrics]
        if mode == "dpo":
            assert metrics[0].margin == 0.0 and metrics[-1].margin > 0.0


def test_a_base_model_that_cannot_be_loaded_fails_in_one_line_naming_it_and_frees_the_placement(
        ray_local, domain_models, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match=str(missing)) as info:
        start_learner_group(RepoRayConfig(learner=learner_config()), missing, domain_models.tokenizer_dir,
                            name="test-learner-bad")
    assert "\n" not in str(info.value)
    states = [pg["state"] for pg in ray_local.util.placement_group_table().values()
              if pg["name"] == "test-learner-bad-pg"]
    assert states == ["REMOVED"]
