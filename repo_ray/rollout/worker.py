"""`RolloutWorker`: the thin Ray actor that holds one backend (HF or vLLM) and plays
negotiations with `play_negotiations`. A plain class: repo_ray/pipeline/placement.py makes
it remote with its placement and fault-tolerance options.

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
from repo_ray.rollout.backend import RolloutBackend, SamplingSettings
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


def build_backend(cfg, policy_path: str, tokenizer_path: str | None = None, device: str = "auto") -> RolloutBackend:
    """The backend `rollout.backend` names, for a RepoRayConfig: HF with `learner.lora`
    settings (so the learner's adapters fit), or vLLM with `rollout.vllm`. "auto" device:
    CUDA when visible (Ray hides GPUs from an actor that reserved none), else CPU. It lives
    here, not in backend.py, because both backends import backend.py."""
    if cfg.rollout.backend == "vllm":
        from repo_ray.rollout.vllm_backend import VLLMBackend

        return VLLMBackend.from_config(cfg, policy_path, tokenizer_path)
    from repo_ray.rollout.hf import HFBackend

    return HFBackend(
        policy_path,
        tokenizer_path,
        lora=cfg.learner.lora,
        dtype=cfg.model.dtype,
        device=device,
        trust_remote_code=cfg.model.trust_remote_code,
    )


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
        return play_negotiations(  # the driver counts the result's new_tokens
            self.backend,
            [_scenario(s) for s in scenarios],
            episode_ids,
            sampling or SamplingSettings.from_config(r),
            max_turns=r.max_turns,
            max_prompt_tokens=r.max_prompt_tokens,
            group_size=group_size,
            stop_when_settled=r.stop_when_settled,  # the evaluation harness plays the same rule
        )

    def load_adapter(self, update: AdapterUpdate) -> AdapterAck:
        return self.backend.load_adapter(update, self.worker_id)  # the driver records the version

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

