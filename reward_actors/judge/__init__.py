"""RJ, the LLM judge: rubric prompt, strict answer schema, async HTTP client, the run's
shared rate limiter, the autoscaled Serve pool and the local heuristic judge server.

How the reward pool uses it (one SourceResult per agent turn; never raises for judge
failures). The driver deploys the pool with `deploy_judge_pool` of the run's launcher
(pipeline/placement.py), which this package does not import:

    pool = deploy_judge_pool(cfg.judge, cfg.reward.judge_weights, run_id, cfg.reward.timeouts.judge_s)
    ctx = JudgeContext.from_trajectory(trajectory, scenario)   # scenario of trajectory.scenario_id
    result = await pool.score(ctx)     # SourceResult: ok with score = E_judge, or a failure status
    ...
    pool.shutdown()

Without Ray (tests, scripts): `async with JudgeClient(cfg.judge, weights) as judge:
result = await judge.score(ctx)`, optionally with `gate=LocalGate(JudgeRateLimiter(...))`.

Modules: prompt (JudgeContext, build_judge_messages), schema (parse_judge_answer,
e_judge), client (JudgeClient), limiter (JudgeRateLimiter and its Ray actor), serve
(the JudgeCaller replica and the JudgePool handle; repo_ray/pipeline/placement.py deploys
them), heuristics + server (the local judge). This package imports no Ray at import time.
"""

from reward_actors.judge.client import JudgeClient, LocalGate
from reward_actors.judge.limiter import JudgeRateLimiter, Permit
from reward_actors.judge.prompt import JudgeContext, build_judge_messages
from reward_actors.judge.schema import InvalidJudgeOutput, JudgeVerdict, e_judge, parse_judge_answer

__all__ = [
    "InvalidJudgeOutput",
    "JudgeClient",
    "JudgeContext",
    "JudgeRateLimiter",
    "JudgeVerdict",
    "LocalGate",
    "Permit",
    "build_judge_messages",
    "e_judge",
    "parse_judge_answer",
]
