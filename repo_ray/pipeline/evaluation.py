"""The run's last stage: base vs SFT vs the RL policy on the held-out evaluation scenarios
and bad cases, beside the scripted expert (eval.expert_row: the ceiling, played through the
same harness), then the report (RUN/report.md with PNG plots and the reward-hacking monitor)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from repo_ray.config import RepoRayConfig
from repo_ray.pipeline.rundir import RunDir, say


def evaluate_one(name: str, cfg: RepoRayConfig, model: Path, tokenizer: Path, adapter: Path | None,
                 scenarios: Any, bad_cases: Any) -> tuple[Any, float]:
    """One policy's evaluation with one torch thread (the RL actors are gone; on a small
    machine more threads per process only oversubscribe it): (PolicyEval, seconds)."""
    import torch

    from repo_ray.eval.harness import evaluate_policy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        return evaluate_policy(name, cfg, model, tokenizer, adapter, scenarios, bad_cases, cfg.seed), \
            time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)


def evaluate_policies(cfg: RepoRayConfig, policies: list[tuple[str, Path, Path, Path | None]], scenarios: Any,
                      bad_cases: Any) -> dict[str, Any]:
    """{name: PolicyEval} in the order given. Without a GPU, and with at least
    eval.task_min_dialogues dialogues, each policy is a 1-CPU Ray task (placement.start_policy_eval),
    so the cores evaluate policies side by side; otherwise the driver evaluates them in-process,
    one after another (a short evaluation costs less than a task's process start). Each result
    is the same either way (greedy decoding, or sampling with the eval seed, inside one process)."""
    import torch

    if torch.cuda.is_available() or len(policies) < 2 or len(scenarios) < cfg.eval.task_min_dialogues:
        done = [evaluate_one(name, cfg, *where, scenarios, bad_cases) for name, *where in policies]
    else:
        import ray

        from repo_ray.errors import remote_user_error
        from repo_ray.pipeline.placement import start_policy_eval

        shared = ray.put(scenarios), ray.put(bad_cases)
        try:
            done = ray.get([start_policy_eval(evaluate_one, name, cfg, *where, *shared)
                            for name, *where in policies])
        except ray.exceptions.RayTaskError as err:
            if (cause := remote_user_error(err)) is not None:  # e.g. a policy that cannot be loaded
                raise cause from None
            raise
    evals = {}
    for (name, *_), (ev, seconds) in zip(policies, done, strict=True):
        evals[name] = ev
        say(f"eval {name}: {seconds:.0f}s")
    return evals


def evaluate_run(cfg: RepoRayConfig, rd: RunDir, data_dir: Path, base: Any, sft_model: Path, rl: Any) -> Path:
    from repo_ray.domain.schemas import load_rows
    from repo_ray.eval.harness import expert_row, write_evals
    from repo_ray.eval.report import write_report

    started = time.perf_counter()
    scenarios = load_rows("eval", data_dir).rows
    bad_cases = load_rows("bad_cases", data_dir).rows
    policies: list[tuple[str, Path, Path, Path | None]] = [
        ("base", base.policy, base.tokenizer, None),
        ("sft", sft_model, sft_model, None),
    ]
    if rl.final_adapter_dir is not None:
        policies.append((cfg.learner.algorithm, sft_model, sft_model, rl.final_adapter_dir))
    evals = evaluate_policies(cfg, policies, scenarios, bad_cases)
    if cfg.eval.expert_row:
        t0 = time.perf_counter()
        evals.update(expert_row(cfg, scenarios, bad_cases, cfg.seed, taken=list(evals)))
        say(f"eval expert (scripted ceiling): {time.perf_counter() - t0:.0f}s")
    say(f"eval stage: {len(evals)} policies x {len(scenarios)} dialogues + {len(bad_cases)} bad cases, "
        f"{time.perf_counter() - started:.0f}s")
    out = rd.local()
    write_evals(evals, out / "eval.json")
    steps = rd.read_parquet_dir("rl", "steps")
    m = cfg.eval.hacking_monitor
    report = write_report(out, steps, evals, out, hacking=(m.window, m.threshold, cfg.reward.n))
    rd.sync_up(out, "")
    return report
