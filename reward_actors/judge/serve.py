"""The autoscaled judge pool: `JudgeCaller` replicas behind a Ray Serve deployment handle,
every replica asking the run's one named JudgeRateLimiter actor before each HTTP call.
`JudgeCaller` is a plain class; repo_ray/pipeline/placement.py makes it a deployment with
its autoscaling and replica options and deploys it (`deploy_judge_pool`).

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

from repo_ray.config import JudgeConfig
from repo_ray.types import NAMESPACE, SourceResult
from reward_actors.judge.client import ActorGate, JudgeClient
from reward_actors.judge.limiter import limiter_name
from reward_actors.judge.prompt import JudgeContext

log = logging.getLogger(__name__)

APP_KIND = "judge"
DEPLOYMENT_NAME = "JudgeCaller"


def bind_replica_grpc_to_node_ip() -> None:
    """Ray Serve 2.60 starts every replica's inter-deployment gRPC server on `[::]:0`, i.e. on
    every interface whatever the node IP (serve/_private/replica.py `_on_initialized`); bind it
    to this node's IP instead: 127.0.0.1 on a local head (DESIGN.md §5), the pod IP on a
    cluster, which is where other replicas reach it. Called in the replica's constructor, which
    runs before Serve starts that server; a Serve without the hook is left alone."""
    try:
        from ray.serve._private import replica as serve_replica
    except ImportError:
        return
    original = getattr(serve_replica, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "_repo_ray_bound", False):
        return
    import ray

    ip = ray.util.get_node_ip_address()
    host = f"[{ip}]" if ":" in ip else ip

    def bound(server, address: str):
        if address.startswith("[::]:"):
            address = f"{host}:{address.rsplit(':', 1)[1]}"
        return original(server, address)

    bound._repo_ray_bound = True  # type: ignore[attr-defined]
    serve_replica.add_port_to_grpc_server = bound


class JudgeCaller:
    """One judge replica: one JudgeClient (connection pool, answer cache) and a gate on the
    run's limiter actor, which the driver created before deploying (placement.deploy_judge_pool).
    `score(ctx)` -> SourceResult; it never raises for judge failures."""

    def __init__(self, judge: dict[str, Any], weights: dict[str, float], run_id: str, deadline_s: float) -> None:
        import ray

        bind_replica_grpc_to_node_ip()
        cfg = JudgeConfig.model_validate(judge)
        limiter = ray.get_actor(limiter_name(run_id), namespace=NAMESPACE)
        self.client = JudgeClient(cfg, weights, gate=ActorGate(limiter), deadline_s=deadline_s)

    async def score(self, ctx: JudgeContext) -> SourceResult:
        return await self.client.score(ctx)

    async def __call__(self, ctx: JudgeContext) -> SourceResult:
        return await self.client.score(ctx)

    def __repr__(self) -> str:
        return f"JudgeCaller({self.client!r})"


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
        from ray import serve

        serve.delete(self.app_name)
        ray.kill(self.limiter)


def replica_count(app_name: str) -> int:
    """Running replicas of the judge deployment of an app (for tests and the bench)."""
    from ray import serve

    status = serve.status().applications.get(app_name)
    if status is None:
        return 0
    dep = status.deployments.get(DEPLOYMENT_NAME)
    if dep is None:
        return 0
    return int(dep.replica_states.get("RUNNING", 0))
