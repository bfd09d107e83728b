"""The RewardPool on the local Ray cluster: all three sources per sample, every field of
every RewardResult checked against the sources computed directly, and masked / partial
results when the judge fails."""

from __future__ import annotations

import pytest

from repo_ray.algos import enhance_reward, enhancement
from repo_ray.config import RepoRayConfig
from repo_ray.domain.schemas import load_rows
from reward_actors.pool import rule_source_result
from tests.reward_actors.conftest import TEST_RM
from tests.reward_actors.rm_tests.helpers import trajectory

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(ray_local, rm_scorer_actor, domain_model_cfg):
    from repo_ray.pipeline.placement import deploy_judge_pool, start_reward_pool
    from reward_actors.judge.server import JudgeServerOptions, JudgeServerProcess

    srv = JudgeServerProcess.start(JudgeServerOptions(seed=0))
    cfg = RepoRayConfig.model_validate({
        "seed": 0, "model": domain_model_cfg.model_dump(), "reward": {"model": TEST_RM.model_dump()},
        "judge": {"base_url": srv.base_url, "api_key_env": None, "timeout_s": 2.0, "max_retries": 0,
                  "rate_limit": {"requests_per_s": 500, "burst": 100, "tokens_per_min": 2e7},
                  "autoscaling": {"min_replicas": 1, "max_replicas": 1, "num_cpus_per_replica": 0.05}},
    })
    rm = rm_scorer_actor
    judge = deploy_judge_pool(cfg.judge, cfg.reward.judge_weights, "pooltest", deadline_s=3.0)
    pools = {}
    actors = []
    for policy in ("mask", "partial"):
        c = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"failure_policy": policy})})
        pools[policy], checkers = start_reward_pool(c, rm, judge.handle)
        actors += [pools[policy], *checkers]
    # the repo_rm ablation's pool: the RM alone, no judge and no rule checker started
    rm_only = cfg.model_copy(update={"reward": cfg.reward.model_copy(update={"sources": ["rm"]})})
    pools["rm"], checkers = start_reward_pool(rm_only, rm, judge.handle)
    assert checkers == []
    actors.append(pools["rm"])
    yield cfg, srv, judge, pools
    judge.shutdown()
    for a in actors:
        ray_local.kill(a)
    srv.stop()


def test_pool_scores_every_sample_with_all_three_sources(stack, data_dir, tokenizer, trained_rm, ray_local):
    from reward_actors.judge.prompt import JudgeContext
    from reward_actors.rm.scorer import RewardModelScorer

    cfg, srv, judge, pools = stack
    srv.control(error_rate=0.0)
    pair_rows = load_rows("preference", data_dir).rows[:3]
    trajs = [trajectory(tokenizer, p, reply, tag)
             for p in pair_rows for reply, tag in ((p.chosen, "c"), (p.rejected, "r"))]
    results = ray_local.get([pools["mask"].score.remote(t, p.scenario)
                             for t, p in zip(trajs, [p for p in pair_rows for _ in (0, 1)])])
    rm_direct = RewardModelScorer(trained_rm.out_dir, "zscore", 16).score(trajs)
    for t, p, res, rm_score in zip(trajs, [p for p in pair_rows for _ in (0, 1)], results, rm_direct):
        assert res.sample_id == t.sample_id and not res.masked and res.reason == ""
        assert set(res.sources) == {"rm", "judge", "rules"}
        assert all(s.ok and s.latency_s >= 0 for s in res.sources.values())
        assert res.r_model == pytest.approx(rm_score, abs=1e-4)
        judged = judge.score(JudgeContext.from_trajectory(t, p.scenario)).result()
        assert res.e_judge == pytest.approx(judged.score)
        assert res.e_func == pytest.approx(rule_source_result(t, p.scenario, cfg.reward).score)
        assert res.e_enh == pytest.approx(enhancement(res.e_judge, res.e_func, cfg.reward.n))
        assert res.r_total == pytest.approx(enhance_reward(res.r_model, res.e_judge, res.e_func, cfg.reward.n))
    assert any(r.e_func < 0 for r in results) and len({r.r_total for r in results}) > 1


def test_judge_failure_masks_or_goes_partial_and_is_never_a_zero(stack, data_dir, tokenizer, ray_local):
    cfg, srv, judge, pools = stack
    p = load_rows("preference", data_dir).rows[5]
    t = trajectory(tokenizer, p, p.chosen, "fail")
    srv.control(error_rate=1.0)
    try:
        masked = ray_local.get(pools["mask"].score.remote(t, p.scenario))
        partial = ray_local.get(pools["partial"].score.remote(t, p.scenario))
    finally:
        srv.control(error_rate=0.0)
    assert masked.masked and masked.r_total is None and masked.e_enh is None
    assert masked.sources["judge"].status.value == "http_error" and masked.sources["judge"].score is None
    assert masked.reason.startswith("judge http_error") and masked.r_model is not None
    assert not partial.masked and partial.e_judge is None and partial.reason.startswith("partial: judge http_error")
    assert partial.e_enh == pytest.approx(enhancement(0.0, partial.e_func, cfg.reward.n))
    assert partial.r_total == pytest.approx(enhance_reward(partial.r_model, 0.0, partial.e_func, cfg.reward.n))


def test_rm_only_pool_passes_r_model_through_and_never_calls_the_judge(stack, data_dir, tokenizer, ray_local):
    cfg, srv, judge, pools = stack
    p = load_rows("preference", data_dir).rows[7]
    t = trajectory(tokenizer, p, p.rejected, "rm-only")
    srv.control(error_rate=1.0)  # a judge call would fail the sample: none is made
    try:
        res = ray_local.get(pools["rm"].score.remote(t, p.scenario))
        asked = srv.stats()["counters"].get("requests", 0)
        full = ray_local.get(pools["partial"].score.remote(t, p.scenario))
    finally:
        srv.control(error_rate=0.0)
    assert asked == 0 and full.sources["judge"].status.value == "http_error"  # the full pool did ask
    assert set(res.sources) == {"rm"} and not res.masked and res.reason == ""
    assert res.e_judge is None and res.e_func is None and res.e_enh is None
    assert res.r_total == pytest.approx(res.r_model) and res.r_model == pytest.approx(full.r_model, abs=1e-4)
