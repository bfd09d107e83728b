"""Where every actor of a run runs, how many there are, and how each survives a crash: the one
file that makes repo-ray's plain classes remote (DESIGN.md §3; the OpenRLHF launcher habit).

    actor             count                    resources                          restarts/retries conc. name
    RolloutWorker     rollout.num_workers      rollout.num_{cpus,gpus}_per_worker max_restarts*/0  1     rollout-I
      frozen control  1 if frozen_control      same                               same             1     rollout-control
    RMScorer          1                        0.25 CPU, reward.model.num_gpus    3/0              1     rm-scorer
    RuleChecker       reward.num_rule_checkers 0.1 CPU                            3/0              1     -
    RewardPool        1                        0.1 CPU                            3/0              1000  -
    JudgeLimiterActor 1                        0 CPU                              3/0              1     judge-limiter
    JudgeCaller       autoscaling min..max     judge.autoscaling.*_per_replica    Serve's          **    (app) judge
    learner ranks     learner.world_size       learner.num_{cpus,gpus}_per_rank   0/0 (rebuilt)    1     learner-RUN-rI
    (* rollout.max_restarts; ** judge.autoscaling.max_ongoing_requests; rI: rankI; placement group learner-RUN-pg)

    task              count                    resources                          retries
    policy evaluation 1 per evaluated policy   1 CPU (one torch thread)           0
    (CPU clusters only, once the RL actors are gone: two cores evaluate two policies at once;
    a driver with a GPU evaluates in-process, one policy after another)

Names carry the run id (RUN; the others end in -RUN) in the namespace `repo_ray` (types.run_scoped_name).
Ray must be initialised (ray_setup.init_ray).

What survives what (one policy per kind; each restart is counted in
repo_ray_actor_restarts_total{kind}, logged in one line and listed in the report):
- rollout worker (kind rollout): Ray restarts it; it comes back at adapter v0, so the driver
  waits for it, re-pushes the last adapter and resubmits its chunk (same episodes, same seed)
  rather than Ray retrying blindly (rollout/worker.py). Nothing is lost or masked.
- RewardPool (reward_pool): Ray restarts it; every score request in flight fails in the
  driver, which waits for the pool to answer again and resubmits each of those samples
  (RLLoop._on_reward). The ledger's `rescored` column counts the re-scorings of a sample.
- RM scorer (rm_scorer) and rule checker (rule_checker): Ray restarts them; the pool asks
  again for every sample it had in flight (the restarted RM scorer; the next rule checker, as
  they are interchangeable), until that source's deadline (reward.timeouts.rm_s / rules_s;
  pool.RewardPool._ask). Only past the deadline is the source a failure (status error or
  timeout) and the sample masked, as any failed source.
- judge replica (judge_replica): Serve replaces it; a request it held ends in the pool as a
  failed judge source (masked, or `partial`), never a 0.
- judge limiter (judge_limiter): Ray restarts it with the spend it had (calls, tokens,
  exhausted): the actor writes its spend to the cluster's key-value store on every change and
  reads it back in its constructor; the driver also keeps the spend in every checkpoint and
  re-seeds the limiter on --resume. What a restart forgets is the 429 back-off and the
  buckets' levels: the request bucket starts empty (no burst right after a restart).
- learner rank (learner): a dead rank breaks the collective job, so the driver shuts the
  group down, starts a new one, loads the last checkpoint into it and rolls the loop back to
  that checkpoint (RLLoop._rollback): ledger entries and log parts written after it are
  dropped and the episodes after its cursor are played again, so each sample id ends in the
  ledger once with its final fate. pipeline.checkpoint_every defaults to 1 (a LoRA
  checkpoint is small, and in async mode it does not drain the pipeline), so at most one
  step is trained again.
- the driver: SIGKILL, then `repo-ray train --resume`, continues from the last checkpoint
  (runlog.restore; see loop.py for what "the same next samples" means in async mode).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from repo_ray.config import JudgeBudget, JudgeConfig, JudgeRateLimit, RepoRayConfig
from repo_ray.telemetry import record_actor_start
from repo_ray.types import NAMESPACE, SOURCE_JUDGE, SOURCE_RULES, run_scoped_name

RM_SCORER_CPUS = 0.25
REWARD_POOL_CPUS = 0.1
RULE_CHECKER_CPUS = 0.1
REWARD_ACTOR_RESTARTS = 3
LIMITER_RESTARTS = 3
# The pool holds the judge pool's Serve handle: on a busy node its router's 0.1 s probe of
# replica queue lengths times out and requests sit in its retry loop; give probes longer.
SERVE_PROBE_DEADLINE_S = 0.5


# Restart kinds (the tag of repo_ray_actor_restarts_total), one per actor class of a run.
KIND_ROLLOUT, KIND_POOL, KIND_RM, KIND_RULES = "rollout", "reward_pool", "rm_scorer", "rule_checker"
KIND_LIMITER, KIND_JUDGE_REPLICA, KIND_LEARNER = "judge_limiter", "judge_replica", "learner"
RESTART_KINDS = (KIND_ROLLOUT, KIND_POOL, KIND_RM, KIND_RULES, KIND_LIMITER, KIND_JUDGE_REPLICA, KIND_LEARNER)


def restart_counted(cls: type, kind: str) -> type:
    """`cls` whose constructor counts a Ray restart of the actor (telemetry.record_actor_start).
    Same name, so the process title stays `ray::ClassName` (what `repo-ray chaos` looks for)."""

    def __init__(self, *args, **kwargs):
        cls.__init__(self, *args, **kwargs)
        record_actor_start(kind)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__qualname__": cls.__qualname__,
                                       "__module__": cls.__module__, "__doc__": cls.__doc__})


# ---------------------------------------------------------------------------- rollout
def rollout_worker_options(cfg: RepoRayConfig, name: str | None = None) -> dict[str, Any]:
    """Ray actor options of a rollout worker (placement and fault tolerance) from the config."""
    options: dict[str, Any] = {
        "max_restarts": cfg.rollout.max_restarts,
        "max_task_retries": 0,  # the driver resubmits after a re-push (rollout/worker.py)
        "num_cpus": cfg.rollout.num_cpus_per_worker,
        "num_gpus": cfg.rollout.num_gpus_per_worker,
    }
    if name is not None:
        options["name"] = name
    return options


def start_rollout_worker(cfg: RepoRayConfig, policy_path: str | os.PathLike, tokenizer_path: str | os.PathLike | None,
                         worker_id: str, name: str | None = None):
    """One RolloutWorker actor (methods: rollout, load_adapter, version, ping)."""
    import ray

    from repo_ray.rollout.worker import RolloutWorker

    actor = ray.remote(restart_counted(RolloutWorker, KIND_ROLLOUT)).options(**rollout_worker_options(cfg, name))
    return actor.remote(cfg, str(policy_path), None if tokenizer_path is None else str(tokenizer_path), worker_id)


def start_rollout_fleet(cfg: RepoRayConfig, policy_path: str | os.PathLike, tokenizer_path: str | os.PathLike,
                        run_id: str) -> tuple[dict[str, Any], Any | None]:
    """The run's rollout workers by worker id (rollout-0, ...) and the frozen-policy control
    worker (None unless pipeline.frozen_control)."""
    workers = {f"rollout-{i}": start_rollout_worker(cfg, policy_path, tokenizer_path, f"rollout-{i}",
                                                    name=run_scoped_name(f"rollout-{i}", run_id))
               for i in range(cfg.rollout.num_workers)}
    control = None
    if cfg.pipeline.frozen_control:
        control = start_rollout_worker(cfg, policy_path, tokenizer_path, "control",
                                       name=run_scoped_name("rollout-control", run_id))
    return workers, control


# ---------------------------------------------------------------------------- reward side
def rm_scorer_options(cfg: RepoRayConfig, num_cpus: float = RM_SCORER_CPUS, max_restarts: int = REWARD_ACTOR_RESTARTS,
                      name: str | None = None) -> dict[str, Any]:
    """Ray actor options of the RMScorer: `reward.model.num_gpus` GPUs (0: CPU scoring)."""
    opts: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": cfg.reward.model.num_gpus, "max_restarts": max_restarts}
    if name is not None:
        opts["name"] = name
    return opts


def start_rm_scorer(cfg: RepoRayConfig, rm_dir: str | os.PathLike, run_id: str | None = None, **options):
    """An RMScorer handle for a trained RM directory, configured from `cfg` (normalization,
    batch size, dtype on GPU, GPUs), named rm-scorer-RUN when `run_id` is given; `options`
    (num_cpus, max_restarts) override rm_scorer_options' defaults."""
    import ray

    from reward_actors.rm.scorer import RMScorer

    if run_id is not None:
        options.setdefault("name", run_scoped_name("rm-scorer", run_id))
    return ray.remote(restart_counted(RMScorer, KIND_RM)).options(**rm_scorer_options(cfg, **options)).remote(
        str(rm_dir), cfg.reward.rm_normalization, cfg.reward.model.batch_size, cfg.model.dtype
    )


def start_reward_pool(cfg: RepoRayConfig, rm_scorer: Any, judge_handle: Any | None, num_cpus: float = REWARD_POOL_CPUS,
                      checker_cpus: float = RULE_CHECKER_CPUS, max_restarts: int = REWARD_ACTOR_RESTARTS):
    """RuleChecker actors (reward.num_rule_checkers) and the RewardPool actor of a run."""
    import ray

    from reward_actors.pool import RewardPool, RuleChecker

    reward_cfg = cfg.reward.model_dump(mode="json")
    checker_cls = ray.remote(restart_counted(RuleChecker, KIND_RULES))
    checkers = [
        checker_cls.options(num_cpus=checker_cpus, max_restarts=max_restarts, max_task_retries=0).remote(reward_cfg)
        for _ in range(cfg.reward.num_rule_checkers)
    ] if SOURCE_RULES in cfg.reward.sources else []
    env = {"RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": str(SERVE_PROBE_DEADLINE_S)}
    pool = ray.remote(restart_counted(RewardPool, KIND_POOL)).options(
        num_cpus=num_cpus, max_restarts=max_restarts, max_concurrency=1000, runtime_env={"env_vars": env}).remote(
        reward_cfg, rm_scorer, checkers, judge_handle if SOURCE_JUDGE in cfg.reward.sources else None,
        rm_batch=cfg.reward.model.batch_size,
    )
    return pool, checkers


# ---------------------------------------------------------------------------- judge
def get_or_create_limiter(run_id: str, rate: JudgeRateLimit, budget: JudgeBudget):
    """The run's named limiter actor, created on first use (every caller of one run shares it).

    The creator owns it: create it from the driver before deploying the judge pool so it
    lives as long as the run. Restarted by Ray (LIMITER_RESTARTS) with the spend it had: it
    persists the spend under a key unique to this creation (module docstring)."""
    import uuid

    import ray

    from reward_actors.judge.limiter import JudgeLimiterActor, limiter_name

    return ray.remote(JudgeLimiterActor).options(
        name=limiter_name(run_id), namespace=NAMESPACE, get_if_exists=True, num_cpus=0,
        max_restarts=LIMITER_RESTARTS, max_concurrency=1,
    ).remote(rate.model_dump(), budget.model_dump(), f"{limiter_name(run_id)}-{uuid.uuid4().hex[:12]}")


def judge_deployment_options(judge: JudgeConfig) -> dict[str, Any]:
    """Serve options of the JudgeCaller deployment: autoscaling, per-replica queue and the
    replica's Ray actor options. A custom resource in `resources_per_replica` pins the
    replicas to the nodes that offer it: on a cluster, the pods that hold the API key."""
    a = judge.autoscaling
    actor_options: dict[str, Any] = {"num_cpus": a.num_cpus_per_replica}
    if a.resources_per_replica:
        actor_options["resources"] = dict(a.resources_per_replica)
    return {
        "autoscaling_config": {
            "min_replicas": a.min_replicas,
            "max_replicas": a.max_replicas,
            "initial_replicas": a.initial_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
            "upscale_delay_s": a.upscale_delay_s,
            "downscale_delay_s": a.downscale_delay_s,
        },
        "max_ongoing_requests": a.max_ongoing_requests,
        "ray_actor_options": actor_options,
        "logging_config": {"log_level": "WARNING"},  # no access-log line per judged sample
    }


def build_judge_app(judge: JudgeConfig, weights: dict[str, float], run_id: str, deadline_s: float):
    """The bound Serve application (not yet running)."""
    from ray import serve

    from reward_actors.judge.serve import DEPLOYMENT_NAME, JudgeCaller

    deployment = serve.deployment(name=DEPLOYMENT_NAME)(JudgeCaller)
    return deployment.options(**judge_deployment_options(judge)).bind(
        judge.model_dump(mode="json"), dict(weights), run_id, float(deadline_s))


def start_serve_local_only() -> None:
    """Start Serve (once per cluster) with no HTTP proxy; a no-op when Serve already runs."""
    from ray import serve

    serve.start(proxy_location="Disabled", http_options={"host": "127.0.0.1"})


def deploy_judge_pool(judge: JudgeConfig, weights: dict[str, float], run_id: str, deadline_s: float):
    """Create the run's limiter actor (owned by this driver), deploy the judge app named
    run_scoped_name("judge", run_id) and return its `JudgePool`.

    `weights` is reward.judge_weights. `deadline_s` bounds one sample in a replica, retries
    and limiter waits included: give it a little less than the caller's own timeout
    (e.g. reward.timeouts.judge_s - 1) so the judge's specific status (rate_limited,
    http_error, ...) arrives before the caller gives up and records a plain timeout."""
    from ray import serve

    from reward_actors.judge.serve import APP_KIND, JudgePool

    limiter = get_or_create_limiter(run_id, judge.rate_limit, judge.budget)
    start_serve_local_only()
    app_name = run_scoped_name(APP_KIND, run_id)
    handle = serve.run(build_judge_app(judge, weights, run_id, deadline_s), name=app_name, route_prefix=None)
    return JudgePool(handle, app_name, limiter)


# ---------------------------------------------------------------------------- learner
@dataclass(frozen=True)
class LearnerBundles:
    """The learner's placement group request: one bundle per rank."""

    bundles: list[dict[str, float]]
    strategy: str
    name: str

    @property
    def one_node(self) -> bool:
        return self.strategy == "STRICT_PACK"


def learner_bundles(cfg: RepoRayConfig, name: str | None = None) -> LearnerBundles:
    learner = cfg.learner
    bundle = {"CPU": learner.num_cpus_per_rank}
    if learner.num_gpus_per_rank:
        bundle["GPU"] = learner.num_gpus_per_rank
    # One node on CPU (gloo over loopback); on GPU, PACK fills a node and may spill over.
    strategy = "PACK" if learner.num_gpus_per_rank else "STRICT_PACK"
    return LearnerBundles([dict(bundle) for _ in range(learner.world_size)], strategy, f"{name}-pg" if name else "")


def learner_rank_options(cfg: RepoRayConfig, name: str | None = None) -> list[dict[str, Any]]:
    """Ray actor options of each rank (no max_restarts: the group is rebuilt, module docstring)."""
    learner = cfg.learner
    env = {} if learner.num_gpus_per_rank else {"DS_ACCELERATOR": "cpu"}
    return [{"num_cpus": learner.num_cpus_per_rank, "num_gpus": learner.num_gpus_per_rank,
             "runtime_env": {"env_vars": dict(env)}, "name": f"{name}-rank{i}" if name else None}
            for i in range(learner.world_size)]


def start_learner_group(cfg: RepoRayConfig, base_model_path: str | os.PathLike, tokenizer_path: str | os.PathLike,
                        mode: str | None = None, name: str | None = None, placement_timeout_s: float = 120.0):
    """Reserve the learner's placement group and start its `LearnerGroup` in it. `name`
    (e.g. run_scoped_name("learner", run_id)) names the ranks and the group; None leaves
    them unnamed."""
    import ray
    from ray.util.placement_group import placement_group

    from repo_ray.learner.group import LearnerGroup, LearnerPlacement, PlacementError, resolve_mode

    mode = resolve_mode(cfg, mode)
    want = learner_bundles(cfg, name)
    group = placement_group(want.bundles, strategy=want.strategy, name=want.name)
    ready, _ = ray.wait([group.ready()], timeout=placement_timeout_s)
    if not ready:
        ray.util.remove_placement_group(group)
        raise PlacementError(
            f"learner placement group ({len(want.bundles)} x {want.bundles[0]}, {want.strategy}) not placed within "
            f"{placement_timeout_s:.0f} s: the cluster lacks the resources (learner.world_size / num_*_per_rank)"
        )
    placement = LearnerPlacement(group, learner_rank_options(cfg, name), want.one_node)
    return LearnerGroup(cfg, base_model_path, tokenizer_path, placement, mode=mode)


EVAL_TASK_CPUS = 1.0


def start_policy_eval(fn, *args) -> Any:
    """One policy evaluation as a Ray task (see the table above); returns its ObjectRef."""
    import ray

    return ray.remote(fn).options(num_cpus=EVAL_TASK_CPUS, max_retries=0).remote(*args)
