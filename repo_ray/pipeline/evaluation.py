"""The run's last stage: base vs SFT vs the RL policy on the held-out evaluation scenarios
and bad cases, then the report (RUN/report.md with PNG plots)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from repo_ray.config import RepoRayConfig
from repo_ray.pipeline.rundir import RunDir, say


def evaluate_run(cfg: RepoRayConfig, rd: RunDir, data_dir: Path, base: Any, sft_model: Path, rl: Any) -> Path:
    import torch

    from repo_ray.domain.schemas import load_rows
    from repo_ray.eval.harness import evaluate_policy, write_evals
    from repo_ray.eval.report import write_report

    # The RL actors are gone by now; on a 2-core machine one thread avoids oversubscription.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scenarios = load_rows("eval", data_dir).rows
        bad_cases = load_rows("bad_cases", data_dir).rows
        policies: list[tuple[str, Path, Path, Path | None]] = [
            ("base", base.policy, base.tokenizer, None),
            ("sft", sft_model, sft_model, None),
        ]
        if rl.final_adapter_dir is not None:
            policies.append((cfg.learner.algorithm, sft_model, sft_model, rl.final_adapter_dir))
        evals = {}
        for name, model, tokenizer, adapter in policies:
            t0 = time.perf_counter()
            evals[name] = evaluate_policy(name, cfg, model, tokenizer, adapter, scenarios, bad_cases, cfg.seed)
            say(f"eval {name}: {time.perf_counter() - t0:.0f}s")
    finally:
        torch.set_num_threads(threads)
    out = rd.local()
    write_evals(evals, out / "eval.json")
    steps = rd.read_parquet_dir("rl", "steps")
    report = write_report(out, steps, evals, out)
    rd.sync_up(out, "")
    return report
