"""Scoring: batch-invariant padding, the RMScorer actor on local Ray, and bad input."""

from __future__ import annotations

import pytest

from repo_ray.pipeline.placement import start_rm_scorer
from reward_actors.rm.data import split_by_scenario
from reward_actors.rm.scorer import RewardModelScorer, score_batch

from .helpers import trajectory


@pytest.fixture(scope="module")
def scorer(trained_rm):
    return RewardModelScorer(trained_rm.out_dir)


@pytest.fixture(scope="module")
def held_out_trajectories(scorer, pairs, rm_cfg):
    """(chosen, rejected) Trajectories of every held-out template pair (the fact-minimal pairs,
    which the tiny RM does not yet learn, are pinned apart in test_rm_train.py); all of them,
    since a 24-pair slice swings by +-10 points."""
    held_out = split_by_scenario(pairs, rm_cfg.reward.model.holdout_fraction, rm_cfg.seed).held_out
    held = [p for p in held_out if p.pair_kind == "template"]
    tok = scorer.tokenizer
    return [trajectory(tok, p, p.chosen, "c") for p in held], [trajectory(tok, p, p.rejected, "r") for p in held]


def test_score_batch_gives_each_sequence_the_same_score_alone_or_padded_in_a_batch(scorer):
    items = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [3]]
    alone = [score_batch(scorer.model, scorer.tokenizer, [x], 1)[0] for x in items]
    batched = score_batch(scorer.model, scorer.tokenizer, items, 3)
    assert batched == pytest.approx(alone, abs=1e-5)
    assert len(set(round(s, 4) for s in batched)) == 4  # distinct inputs, distinct scores
    with pytest.raises(ValueError, match="item 1: empty"):
        score_batch(scorer.model, scorer.tokenizer, [[1, 2], []], 2)


def test_in_process_scorer_prefers_the_chosen_reply_and_z_scores(scorer, held_out_trajectories):
    chosen, rejected = held_out_trajectories
    z_c, z_r = scorer.score(chosen), scorer.score(rejected)
    raw_c = scorer.score(chosen, normalize=False)
    assert z_c == pytest.approx([(s - scorer.stats.mean) / scorer.stats.std for s in raw_c])
    assert sum(c > r for c, r in zip(z_c, z_r)) >= 0.8 * len(chosen)
    raw = RewardModelScorer(scorer.rm_dir, normalization="none")
    assert raw.score(chosen) == pytest.approx(raw_c, abs=1e-6)


def test_rm_scorer_actor_scores_trajectories_like_in_process_scoring(ray_local, rm_scorer_actor, scorer,
                                                                     held_out_trajectories):
    chosen, rejected = held_out_trajectories
    actor = rm_scorer_actor  # the session's (the pool tests score through it too)
    assert ray_local.get(actor.info.remote())["device"] == "cpu"  # reward.model.num_gpus is 0
    scores = ray_local.get(actor.score.remote(chosen + rejected))
    assert scores == pytest.approx(scorer.score(chosen + rejected), abs=1e-5)
    n = len(chosen)
    assert sum(c > r for c, r in zip(scores[:n], scores[n:])) >= 0.8 * n
    assert ray_local.get(actor.score.remote([])) == []
    with pytest.raises(TypeError, match="item 1: expected a Trajectory, got dict"):
        ray_local.get(actor.score.remote([chosen[0], {"response_text": "hi"}]))
    assert ray_local.get(actor.score.remote(chosen[:2])) == pytest.approx(scores[:2], abs=1e-5)  # still serving


@pytest.mark.gpu
def test_rm_scorer_actor_scores_on_cuda_when_reward_model_num_gpus_gives_it_a_gpu(ray_local, trained_rm, rm_cfg, scorer,
                                                                                 held_out_trajectories):
    import torch

    if not torch.cuda.is_available() or not ray_local.cluster_resources().get("GPU"):
        pytest.skip("needs a CUDA GPU in the local Ray cluster")
    cfg = rm_cfg.model_copy(deep=True)
    cfg.reward.model.num_gpus = 0.5
    actor = start_rm_scorer(cfg, trained_rm.out_dir, num_cpus=0.25, max_restarts=0)
    try:
        assert ray_local.get(actor.info.remote())["device"] == "cuda"
        chosen = held_out_trajectories[0]
        assert ray_local.get(actor.score.remote(chosen)) == pytest.approx(scorer.score(chosen), abs=1e-3)
    finally:
        ray_local.kill(actor)
