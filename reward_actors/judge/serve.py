"""The autoscaled judge pool: `JudgeCaller` replicas behind a Ray Serve deployment handle,
every replica asking the run's one named JudgeRateLimiter actor before each HTTP call.

API key: replicas read `os.environ[judge.api_key_env]` in their own process, at call time.
It must reach them through the process environment, never `runtime_env` env_vars (the
dashboard and job records show those). On a local cluster started by this driver
(`init_ray`), Ray's worker processes inherit the driver's environment as it was when the
head started, so export the key before starting the run. On a cluster, mount a Secret as
an environment variable of the Ray pods (cluster/ manifests).

Serve's HTTP proxy is not started (`proxy_location="Disabled"`, and its host is pinned to
127.0.0.1 should anything start one): the pool is reached only through the handle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ray import serve

from repo_ray.config import JudgeConfig
from repo_ray.pipeline.ray_setup import NAMESPACE, run_scoped_name
from repo_ray.types import SourceResult
from reward_actors.judge.client import ActorGate, JudgeClient
from reward_actors.judge.limiter import get_or_create_limiter, limiter_name
from reward_actors.judge.prompt import JudgeContext

log = logging.getLogger(__name__)

APP_KIND = "judge"
DEPLOYMENT_NAME = "JudgeCaller"


@serve.deployment(name=DEPLOYMENT_NAME)
class JudgeCaller:
    """One judge replica: one JudgeClient (connection pool, answer cache) and a gate on the
    run's limiter actor. `score(ctx)` -> SourceResult; it never raises for judge failures."""

    def __init__(self, judge: dict[str, Any], weights: dict[str, float], run_id: str, deadline_s: float) -> None:
        import ray

        cfg = JudgeConfig.model_validate(judge)
        try:
            limiter = ray.get_actor(limiter_name(run_id), namespace=NAMESPACE)
        except ValueError:  # deployed without deploy_judge_pool: create it (this replica then owns it)
            limiter = get_or_create_limiter(run_id, cfg.rate_limit, cfg.budget)
        self.client = JudgeClient(cfg, weights, gate=ActorGate(limiter), deadline_s=deadline_s)

    async def score(self, ctx: JudgeContext) -> SourceResult:
        return await self.client.score(ctx)

    async def __call__(self, ctx: JudgeContext) -> SourceResult:
        return await self.client.score(ctx)

    def __repr__(self) -> str:
        return f"JudgeCaller({self.client!r})"


def autoscaling_config(judge: JudgeConfig) -> dict[str, Any]:
    a = judge.autoscaling
    return {
        "min_replicas": a.min_replicas,
        "max_replicas": a.max_replicas,
        "initial_replicas": a.initial_replicas,
        "target_ongoing_requests": a.target_ongoing_requests,
        "upscale_delay_s": a.upscale_delay_s,
        "downscale_delay_s": a.downscale_delay_s,
    }


def replica_actor_options(judge: JudgeConfig) -> dict[str, Any]:
    """Ray actor options of one replica. A custom resource in `resources_per_replica` pins the
    replicas to the nodes that offer it: on a cluster, the pods that hold the API key."""
    a = judge.autoscaling
    opts: dict[str, Any] = {"num_cpus": a.num_cpus_per_replica}
    if a.resources_per_replica:
        opts["resources"] = dict(a.resources_per_replica)
    return opts


def build_judge_app(judge: JudgeConfig, weights: dict[str, float], run_id: str, deadline_s: float):
    """The bound Serve application (not yet running)."""
    a = judge.autoscaling
    return JudgeCaller.options(
        autoscaling_config=autoscaling_config(judge),
        max_ongoing_requests=a.max_ongoing_requests,
        ray_actor_options=replica_actor_options(judge),
        logging_config={"log_level": "WARNING"},  # no access-log line per judged sample
    ).bind(judge.model_dump(mode="json"), dict(weights), run_id, float(deadline_s))


@dataclass
class JudgePool:
    """A running judge pool. `await pool.score(ctx)` (or `pool.score(ctx).result()` outside
    asyncio) gives the SourceResult of one sample."""

    handle: Any  # serve.handle.DeploymentHandle
    app_name: str
    limiter: Any  # the JudgeLimiterActor handle (budget and rate state: `limiter.state.remote()`)

    def score(self, ctx: JudgeContext):
        """A DeploymentResponse resolving to the SourceResult of `ctx`."""
        return self.handle.score.remote(ctx)

    def shutdown(self) -> None:
        import ray

        serve.delete(self.app_name)
        ray.kill(self.limiter)


def start_serve_local_only() -> None:
    """Start Serve (once per cluster) with no HTTP proxy; a no-op when Serve already runs."""
    serve.start(proxy_location="Disabled", http_options={"host": "127.0.0.1"})


def deploy_judge_pool(judge: JudgeConfig, weights: dict[str, float], run_id: str, deadline_s: float) -> JudgePool:
    """Create the run's limiter actor (owned by this driver), deploy the judge app named
    run_scoped_name("judge", run_id) and return its pool. Ray must be initialised
    (pipeline/ray_setup.py).

    `weights` is reward.judge_weights. `deadline_s` bounds one sample in a replica, retries
    and limiter waits included: give it a little less than the caller's own timeout
    (e.g. reward.timeouts.judge_s - 1) so the judge's specific status (rate_limited,
    http_error, ...) arrives before the caller gives up and records a plain timeout."""
    limiter = get_or_create_limiter(run_id, judge.rate_limit, judge.budget)
    start_serve_local_only()
    app_name = run_scoped_name(APP_KIND, run_id)
    handle = serve.run(build_judge_app(judge, weights, run_id, deadline_s), name=app_name, route_prefix=None)
    return JudgePool(handle, app_name, limiter)


def replica_count(app_name: str) -> int:
    """Running replicas of the judge deployment of an app (for tests and the bench)."""
    status = serve.status().applications.get(app_name)
    if status is None:
        return 0
    dep = status.deployments.get(DEPLOYMENT_NAME)
    if dep is None:
        return 0
    return int(dep.replica_states.get("RUNNING", 0))
