"""One tiny pipeline run shared by the end-to-end tests (built once per test run), plus a
sync run that reuses its data, SFT model and reward model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from repo_ray.config import RepoRayConfig
from tests.conftest import TEST_DATA, TEST_TINY


def tiny_pipeline_config(cache_dir: str, **overrides: Any) -> RepoRayConfig:
    data = TEST_DATA.model_dump() | {"rl_scenarios": 48, "eval_dialogues": 6, "bad_cases": 8}
    cfg = {
        "name": "e2e",
        "model": {"dtype": "float32", "cache_dir": cache_dir, "tiny": TEST_TINY.model_dump()},
        "data": data,
        "rollout": {"num_workers": 2, "num_cpus_per_worker": 0.25, "scenarios_per_batch": 4, "max_new_tokens": 20,
                    "max_prompt_tokens": 512, "max_turns": 3},
        "reward": {"model": {"epochs": 1, "lr": 1e-3, "batch_size": 32, "max_tokens": 512}},
        "judge": {"api_key_env": None, "timeout_s": 5.0,
                  "rate_limit": {"requests_per_s": 500, "burst": 100, "tokens_per_min": 2e7},
                  "autoscaling": {"min_replicas": 1, "max_replicas": 1, "num_cpus_per_replica": 0.05},
                  "local_server": {"enabled": True}},
        "learner": {"zero_stage": 0, "num_cpus_per_rank": 0.25, "batch_size": 16, "micro_batch_size": 8,
                    "max_steps": 4, "lora": {"r": 4, "alpha": 8}, "optimizer": {"lr": 1e-3},
                    "sft": {"epochs": 1, "lr": 3e-3, "max_tokens": 512}},
        "pipeline": {"mode": "async", "max_staleness": 1, "checkpoint_every": 2},
    }
    for dotted, value in overrides.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return RepoRayConfig.model_validate(cfg)


@dataclass
class PipelineRun:
    cfg: RepoRayConfig
    run_dir: Path
    summary: dict[str, Any]
    worker_versions: list[dict[str, int]] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    metrics_pages: list[str] = field(default_factory=list)  # the metrics endpoint, read after every step


def metrics_page() -> str:
    import urllib.request

    from ray._private.worker import global_worker

    port = global_worker.node.metrics_export_port
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("pipeline-model-cache"))


@pytest.fixture(scope="session")
def pipeline_run(ray_local, tmp_path_factory, model_cache) -> PipelineRun:
    """The async run: 4 RL steps; rollout-0 is killed right after step 1 (fault test)."""
    from repo_ray.pipeline.train import train

    cfg = tiny_pipeline_config(model_cache)
    run = PipelineRun(cfg, tmp_path_factory.mktemp("e2e") / "run", {})

    def on_step(lp, record):
        run.worker_versions.append({w: ray_local.get(h.version.remote()) for w, h in lp.workers.items()})
        # Ray drops a gauge from the endpoint ~20 s after its last set: read gauges while the run lives
        run.metrics_pages.append(metrics_page())
        if record.step == 1:
            ray_local.kill(lp.workers["rollout-0"], no_restart=False)  # Ray restarts it (max_restarts)
            run.killed.append("rollout-0")

    run.summary = train(cfg, str(run.run_dir), progress=False, evaluate=False, on_step=on_step)
    return run


@pytest.fixture(scope="session")
def sync_run(pipeline_run, tmp_path_factory) -> PipelineRun:
    """The same config in sync mode, 3 steps, reusing the async run's data, SFT and RM."""
    return run_rl_only(pipeline_run, tmp_path_factory.mktemp("sync") / "run", mode="sync", max_steps=3)


def run_rl_only(base: PipelineRun, run_dir: Path, mode: str, max_steps: int, resume: bool = False,
                on_step=None, cfg: RepoRayConfig | None = None) -> PipelineRun:
    from repo_ray.pipeline.rundir import RunDir
    from repo_ray.pipeline.train import run_id_for, run_rl

    cfg = cfg or tiny_pipeline_config(base.cfg.model.cache_dir, pipeline__mode=mode, learner__max_steps=max_steps)
    rd = RunDir(str(run_dir))
    s = base.summary
    rl = run_rl(cfg, rd, run_id_for(cfg, rd) + mode, Path(s["data_dir"]), Path(s["sft_model"]), Path(s["rm_dir"]),
                resume=resume, progress=False, on_step=on_step)
    return PipelineRun(cfg, run_dir, {**s, "rl_steps": len(rl.steps), "ledger": rl.ledger_counts})
