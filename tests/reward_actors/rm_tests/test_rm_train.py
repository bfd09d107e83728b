"""Bradley-Terry training: held-out accuracy on a scenario split, the saved directory, z-scoring."""

from __future__ import annotations

import statistics

import pytest
import torch
from safetensors.torch import load_file

from repo_ray.config import RepoRayConfig, RewardConfig, RewardModelTraining
from repo_ray.domain.defects import DEFECTS
from reward_actors.rm.data import encode_pairs, split_by_scenario
from reward_actors.rm.scorer import RewardModelScorer, score_batch
from reward_actors.rm.stats import load_rm_stats
from reward_actors.rm.train import train_reward_model


def test_rm_beats_0_8_held_out_overall_and_on_length_matched_pairs_with_per_defect_report(trained_rm, pairs, rm_cfg):
    r = trained_rm
    split = split_by_scenario(pairs, rm_cfg.reward.model.holdout_fraction, rm_cfg.seed)
    assert not {p.scenario.scenario_id for p in split.train} & {p.scenario.scenario_id for p in split.held_out}
    assert (r.train_pairs, r.held_out_pairs) == (len(split.train), len(split.held_out)) == (336, 144)
    print("\n".join(["held-out:", *r.held_out.lines()]), f"\ntrain {r.train_s:.1f}s, total {r.total_s:.1f}s")
    # > 0.8 on the template defects (what this test pinned before the fact-minimal pairs
    # existed); the fact-minimal pairs have their own line and their own test below.
    assert r.held_out.overall.pairs == 144 and r.held_out.per_kind["template"].accuracy > 0.8
    assert r.held_out.length_matched.pairs >= 15 and r.held_out.length_matched.accuracy > 0.8
    template = [p for p in split.held_out if p.pair_kind == "template"]
    minimal = [p for p in split.held_out if p.pair_kind == "fact_minimal"]
    assert template and minimal  # the generated set holds both kinds, reported apart
    assert set(r.held_out.per_defect) == {p.defect for p in template} and set(r.held_out.per_defect) <= set(DEFECTS)
    assert set(r.held_out.minimal_per_defect) == {p.defect for p in minimal}
    per_kind = r.held_out.per_kind
    assert sum(g.pairs for g in r.held_out.per_defect.values()) == len(template) == per_kind["template"].pairs
    assert sum(g.pairs for g in r.held_out.minimal_per_defect.values()) == len(minimal) == r.held_out.fact_minimal.pairs
    assert len(template) + len(minimal) == 144
    assert r.train.overall.accuracy >= r.held_out.overall.accuracy - 0.05  # it fit the training pairs too


def test_saved_rm_holds_safetensors_weights_tokenizer_and_stats_only(trained_rm):
    files = sorted(p.name for p in trained_rm.out_dir.iterdir())
    weights = [f for f in files if f.endswith((".safetensors", ".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    assert weights == ["model.safetensors"]
    assert "rm_stats.json" in files and "config.json" in files and "tokenizer.json" in files
    assert not any(f.startswith("adapter_") for f in files)  # merged, not an adapter
    tensors = load_file(str(trained_rm.out_dir / "model.safetensors"))
    assert tensors["score.weight"].shape == (1, 64)
    stats = load_rm_stats(trained_rm.out_dir)
    assert (stats.mean, stats.std, stats.max_tokens) == (trained_rm.stats.mean, trained_rm.stats.std, 512)
    assert stats.held_out == trained_rm.held_out and stats.reference_size == 2 * trained_rm.train_pairs


def test_zscore_stats_give_the_reference_set_mean_0_and_std_1(trained_rm, pairs, rm_cfg):
    scorer = RewardModelScorer(trained_rm.out_dir)  # reloaded from disk, as the actor does
    train = encode_pairs(scorer.tokenizer, split_by_scenario(pairs, 0.3, rm_cfg.seed).train, scorer.stats.max_tokens)
    seqs = [p.chosen_ids for p in train] + [p.rejected_ids for p in train]
    raw = score_batch(scorer.model, scorer.tokenizer, seqs, 64)
    z = [scorer.normalizer(s) for s in raw]
    assert abs(statistics.fmean(raw)) > 0.05 or abs(statistics.stdev(raw) - 1) > 0.05  # raw scores are not z-scores
    assert abs(statistics.fmean(z)) < 1e-3 and abs(statistics.stdev(z) - 1.0) < 1e-3


def test_lora_finetune_trains_the_score_head_and_saves_a_merged_classifier(pairs, domain_models, domain_model_cfg,
                                                                            tmp_path):
    from reward_actors.rm.train import _load_trainable

    cfg = RepoRayConfig(model=domain_model_cfg, reward=RewardConfig(model=RewardModelTraining(
        epochs=1, lr=1e-3, batch_size=16, max_tokens=512, holdout_fraction=0.2, finetune="lora",
        gradient_checkpointing=True)))  # as configs/smollm2.yaml: LoRA on a checkpointed base
    cfg.learner.lora.r, cfg.learner.lora.alpha = 4, 8
    from repo_ray.model import load_tokenizer

    trainable = _load_trainable(cfg, domain_models.reward_dir, load_tokenizer(domain_models.tokenizer_dir), "cpu")
    assert trainable.base_model.model.is_activation_checkpointing
    r = train_reward_model(cfg, pairs[:64], domain_models.reward_dir, tmp_path / "rm",
                           tokenizer_path=domain_models.tokenizer_dir)
    before = load_file(str(domain_models.reward_dir / "model.safetensors"))
    after = load_file(str(r.out_dir / "model.safetensors"))
    assert r.finetune == "lora" and r.steps == 4 and r.stats.info["lora"]["r"] == 4
    assert set(after) == set(before)  # a plain classifier: no lora_A/B, no modules_to_save copies
    assert not torch.equal(after["score.weight"], before["score.weight"])
    q_proj = "model.layers.0.self_attn.q_proj.weight"  # a LoRA target, merged
    assert not torch.equal(after[q_proj], before[q_proj])
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])  # not a LoRA target


def test_rm_context_counts_are_saved_with_the_stats(trained_rm):
    ctx = trained_rm.stats.info["context"]
    assert ctx["pairs"] == 480 and ctx["max_tokens"] == 512
    assert 0 < ctx["pairs_with_dropped_turns"] < 480 and ctx["dropped_turns"] >= ctx["pairs_with_dropped_turns"]


@pytest.mark.xfail(strict=True, reason=(
    "open (issue 12 item 2): the hidden-64 tiny RM does not learn to read a price against the facts from a few "
    "hundred pairs. Measured on the test data (held-out false-price pairs, 18 unless said): as is 0.44; every grid "
    "price one token 0.61; + minimal share 0.5 0.63 (35); + 12 epochs 0.63 (train 0.98: it memorises); 1600 pairs "
    "0.53 (113); 3 layers 0.56; LM loss beside BT 0.56; 400 LM steps on the RM inputs first 0.56; mimetic attention "
    "init 0.44. Counterfactual twins (the same dialogue with the false figure made the fact, sides swapped) leave "
    "no per-figure shortcut: train 0.61, held out 0.33 (24): the gains above are memorised figures, not facts read"))
def test_rm_ranks_the_true_reply_above_the_same_reply_with_a_false_price_on_held_out_minimal_pairs(trained_rm):
    false_price = trained_rm.held_out.minimal_per_defect["hallucinated_number"]
    assert false_price.pairs >= 10 and false_price.accuracy >= 0.9
