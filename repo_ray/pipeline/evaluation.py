"""The run's last stage: base vs SFT vs the RL policy on the held-out evaluation scenarios
and bad cases, beside the scripted expert (eval.expert_row: the ceiling, played through the
same harness), then the report (RUN/report.md with PNG plots and the reward-hacking monitor)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from repo_ray.config import RepoRayConfig
from repo_ray.pipeline.rundir import RunDir, say


def evaluate_run(cfg: RepoRayConfig, rd: RunDir, data_dir: Path, base: Any, sft_model: Path, rl: Any) -> Path:
    import torch

    from repo_ray.domain.schemas import load_rows
    from repo_ray.eval.harness import evaluate_policy, expert_row, write_evals
    from repo_ray.eval.report import write_report

    # The RL actors are gone by now; on a 2-core machine one thread avoids oversubscription.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
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
        if cfg.eval.expert_row:
            t0 = time.perf_counter()
            evals.update(expert_row(cfg, scenarios, bad_cases, cfg.seed, taken=list(evals)))
            say(f"eval expert (scripted ceiling): {time.perf_counter() - t0:.0f}s")
    finally:
        torch.set_num_threads(threads)
    say(f"eval stage: {len(evals)} policies x {len(scenarios)} dialogues + {len(bad_cases)} bad cases, "
        f"{time.perf_counter() - started:.0f}s")
    out = rd.local()
    write_evals(evals, out / "eval.json")
    steps = rd.read_parquet_dir("rl", "steps")
    m = cfg.eval.hacking_monitor
    report = write_report(out, steps, evals, out, hacking=(m.window, m.threshold, cfg.reward.n))
    rd.sync_up(out, "")
    return report
