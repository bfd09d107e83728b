"""`RolloutWorker`: the thin Ray actor that holds one backend (HF or vLLM) and plays
negotiations with `play_negotiations`; `make_rollout_worker` creates it with its
placement and fault-tolerance options.

Fault tolerance: the actor restarts up to `rollout.max_restarts` times, but its tasks are
not retried by Ray (max_task_retries 0). A restarted worker comes back with the base
adapter (version 0), so a blindly retried rollout would silently play an old policy; the
driver instead sees the failed call, resubmits the scenarios, and re-pushes the current
adapter to any worker whose `ping()` says `restarted` or whose version is behind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from repo_ray.config import RepoRayConfig
from repo_ray.domain.scenario import Scenario
from repo_ray.rollout.backend import SamplingSettings, build_backend
from repo_ray.rollout.play import RolloutResult, play_negotiations
from repo_ray.types import AdapterAck, AdapterUpdate


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    worker_id: str
    adapter_version: int
    restarted: bool  # Ray rebuilt this actor after a crash: its adapter is back at version 0
    pid: int
    backend: str


def _scenario(item: Scenario | Mapping[str, Any]) -> Scenario:
    if isinstance(item, Scenario):
        return item
    row = item.get("scenario", item)  # a row of the rl/eval Parquet files, or a bare scenario struct
    return Scenario.from_row(row)


class RolloutWorker:
    """One rollout worker; every method is a thin call into the pure code."""

    def __init__(self, cfg: RepoRayConfig, policy_path: str, tokenizer_path: str | None, worker_id: str) -> None:
        self.cfg = cfg
        self.worker_id = worker_id
        self.backend = build_backend(cfg, policy_path, tokenizer_path)

    def rollout(
        self,
        scenarios: Sequence[Scenario | Mapping[str, Any]],
        episode_ids: Sequence[str],
        sampling: SamplingSettings | None = None,
        group_size: int = 1,
    ) -> RolloutResult:
        r = self.cfg.rollout
        result = play_negotiations(
            self.backend,
            [_scenario(s) for s in scenarios],
            episode_ids,
            sampling or SamplingSettings.from_config(r),
            max_turns=r.max_turns,
            max_prompt_tokens=r.max_prompt_tokens,
            group_size=group_size,
        )
        self._record("repo_ray_tokens_total", result.new_tokens)
        return result

    def load_adapter(self, update: AdapterUpdate) -> AdapterAck:
        ack = self.backend.load_adapter(update, self.worker_id)
        self._record("repo_ray_adapter_version", ack.version)
        return ack

    def version(self) -> int:
        return self.backend.adapter_version

    def ping(self) -> WorkerStatus:
        import ray

        return WorkerStatus(
            worker_id=self.worker_id,
            adapter_version=self.backend.adapter_version,
            restarted=ray.get_runtime_context().was_current_actor_reconstructed,
            pid=os.getpid(),
            backend=self.cfg.rollout.backend,
        )

    def _record(self, name: str, value: float) -> None:
        from repo_ray.pipeline.metrics import metric

        m = metric(name)
        tags = {"worker": self.worker_id}
        if name.endswith("_total"):
            m.inc(value, tags=tags)
        else:
            m.set(value, tags=tags)


def rollout_worker_options(cfg: RepoRayConfig, name: str | None = None) -> dict[str, Any]:
    """Ray actor options of a rollout worker (placement and fault tolerance) from the config."""
    options: dict[str, Any] = {
        "max_restarts": cfg.rollout.max_restarts,
        "max_task_retries": 0,  # see the module docstring: the driver resubmits after a re-push
        "num_cpus": cfg.rollout.num_cpus_per_worker,
        "num_gpus": cfg.rollout.num_gpus_per_worker,
    }
    if name is not None:
        options["name"] = name
    return options


def make_rollout_worker(
    cfg: RepoRayConfig, policy_path: str, tokenizer_path: str | None, worker_id: str, name: str | None = None
):
    """Start one RolloutWorker actor; returns its handle (methods: rollout, load_adapter,
    version, ping). `name` (e.g. run_scoped_name("rollout-0", run_id)) makes it a named actor."""
    import ray

    actor = ray.remote(RolloutWorker).options(**rollout_worker_options(cfg, name))
    return actor.remote(cfg, str(policy_path), None if tokenizer_path is None else str(tokenizer_path), worker_id)
