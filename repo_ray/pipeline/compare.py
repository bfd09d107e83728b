"""`repo-ray compare`: base, SFT, DPO, PPO, GRPO and REPO, plus reward-source ablations,
trained from the same data with the same sample budget, evaluated alike, one report.

Every method starts from the run's SFT model (RUN/sft/model) and reward model; the data,
tiny model, SFT and RM stages are the ones `repo-ray train` builds, reused by input hash.
Each RL method trains in RUN/methods/NAME (its own rl/ logs and final adapter) with the
run's config plus the method's overrides, `learner.max_steps` x `learner.batch_size`
samples, no frozen control and one checkpoint at the end. DPO gets the same budget in
preference pairs (pairs x epochs). Every RL method is scored by the run's reward sources
(PPO and GRPO log the judge and rules without training on them), so the reward curves
share one scale; the ablations restrict `reward.sources` and so train on what they keep.
Each method and each evaluation is a stage reused when its input hash matches.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repo_ray.config import RepoRayConfig
from repo_ray.eval.stepstats import COLUMNS
from repo_ray.pipeline.methods import (
    METHODS,
    CompareError,
    Method,
    method_config,
    parse_methods,
    sample_budget,
)
from repo_ray.pipeline.ray_setup import init_ray
from repo_ray.pipeline.rundir import RunDir, say
from repo_ray.pipeline.runlog import read_steps
from repo_ray.pipeline.train import (
    RewardSide,
    optimizer_key,
    probe_tokens,
    run_id_for,
    run_rl,
    stage_base,
    stage_data,
    stage_rm,
    stage_sft,
    start_reward_side,
)


@dataclass
class Trained:
    """A method's policy: a model directory (+ tokenizer) and an optional adapter directory."""

    method: Method
    model: Path
    tokenizer: Path
    adapter: Path | None
    key: str
    steps: list[dict[str, Any]]
    info: dict[str, Any]


# ---------------------------------------------------------------------------- stages
def stage_dpo(cfg: RepoRayConfig, rd: RunDir, data_dir: Path, data_key: str, sft_model: Path,
              sft_key: str) -> tuple[Path, str, dict[str, Any]]:
    from repo_ray.domain.schemas import load_rows
    from repo_ray.model.adapters import write_adapter_dir
    from repo_ray.pipeline.placement import start_learner_group

    pairs = load_rows("preference", data_dir).rows
    epochs = cfg.learner.dpo.epochs
    budget = sample_budget(cfg)
    n = len(pairs) if budget is None else min(len(pairs), max(cfg.learner.batch_size, budget // epochs))
    stage = rd.stage("method-dpo", sft_key, data_key, n, cfg.learner.dpo.model_dump(mode="json"),
                     cfg.learner.lora.model_dump(mode="json"), optimizer_key(cfg, cfg.learner.dpo.lr),
                     cfg.learner.batch_size, cfg.learner.micro_batch_size, cfg.seed, label="dpo",
                     output=("methods", "dpo"))
    out = rd.local("methods", "dpo", "adapter")
    if stage.reused(out, (out / "adapter_config.json").is_file()):
        return out, stage.key, rd.read_json("methods", "dpo", "info.json")
    chosen = random.Random(cfg.seed).sample(pairs, n)
    group = start_learner_group(cfg, sft_model, sft_model, mode="dpo", name=f"dpo-{stage.key[:8]}")
    try:
        steps = group.dpo(chosen, epochs)
        update = group.publish_adapter(0, probe_tokens(sft_model, load_rows("rl", data_dir).rows[0]))
    finally:
        group.shutdown()
    write_adapter_dir(update, out)
    losses = [s.loss for s in steps]
    info = {"pairs": n, "epochs": epochs, "samples": n * epochs, "optimizer_steps": len(steps),
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "seconds": round(stage.seconds, 1)}
    rd.write_json(info, "methods", "dpo", "info.json")
    stage.finish(f"{n} pairs x {epochs} epochs, {len(steps)} steps, loss {info['first_loss']:.3f} -> "
                 f"{info['last_loss']:.3f}", out, **{k: v for k, v in info.items() if k != "seconds"})
    return out, stage.key, info


def stage_rl_method(cfg: RepoRayConfig, rd: RunDir, m: Method, data_dir: Path, sft_model: Path, sft_key: str,
                    rm_dir: Path, rm_key: str, progress: bool,
                    reward_side: Callable[[], RewardSide]) -> tuple[Path | None, str, list[dict[str, Any]]]:
    """One RL method in RUN/methods/NAME; `reward_side()` gives the RM scorer and judge pool
    every method shares (started on first use)."""
    mcfg = method_config(cfg, m)
    stage = rd.stage(f"method-{m.name}", sft_key, rm_key, mcfg.learner.model_dump(mode="json"),
                     mcfg.reward.model_dump(mode="json"), mcfg.rollout.model_dump(mode="json"),
                     mcfg.judge.model_dump(mode="json"), mcfg.pipeline.mode, mcfg.pipeline.max_staleness, mcfg.seed,
                     label=m.name)
    mrd = RunDir(f"{rd.uri.rstrip('/')}/methods/{m.name}")
    adapter = mrd.local("rl", "final_adapter")
    if stage.reused(adapter, (adapter / "adapter_config.json").is_file()):
        return adapter, stage.key, read_steps(mrd)
    say(f"{m.name}: training ({m.summary})")
    rl = run_rl(mcfg, mrd, run_id_for(mcfg, mrd), data_dir, sft_model, rm_dir, resume=False, progress=progress,
                reward_side=reward_side())
    stage.finish(f"{len(rl.steps)} steps", steps=len(rl.steps), ledger=rl.ledger_counts)
    return rl.final_adapter_dir, stage.key, rl.steps


def stage_evals(cfg: RepoRayConfig, rd: RunDir, trained: list[Trained], data_dir: Path, data_key: str) -> list[Any]:
    """Each method's PolicyEval in RUN/compare/evals/NAME.json, reused when its stage key
    matches; the others are evaluated side by side (pipeline/evaluation.evaluate_policies)."""
    from repo_ray.domain.schemas import load_rows
    from repo_ray.eval.harness import PolicyEval
    from repo_ray.pipeline.evaluation import evaluate_policies

    out: dict[str, Any] = {}
    todo = []
    for t in trained:
        stage = rd.stage(f"eval-{t.method.name}", t.key, data_key, cfg.eval.model_dump(mode="json"),
                         cfg.rollout.temperature, cfg.rollout.max_new_tokens, cfg.rollout.top_p, cfg.rollout.top_k,
                         cfg.rollout.max_turns, cfg.rollout.stop_when_settled, cfg.seed, label=f"eval {t.method.name}")
        parts = ("compare", "evals", f"{t.method.name}.json")
        if stage.reused(rd.path(*parts), rd.exists(*parts)):
            out[t.method.name] = PolicyEval.from_dict(rd.read_json(*parts))
        else:
            todo.append((t, stage, parts))
    if todo:
        evals = evaluate_policies(cfg, [(t.method.name, t.model, t.tokenizer, t.adapter) for t, _, _ in todo],
                                  load_rows("eval", data_dir).rows, load_rows("bad_cases", data_dir).rows)
        for t, stage, parts in todo:
            rd.write_json(evals[t.method.name].to_dict(), *parts)
            stage.finish("evaluated", rd.path(*parts))
            out[t.method.name] = evals[t.method.name]
    return [out[t.method.name] for t in trained]


# ---------------------------------------------------------------------------- entrypoint
def compare(cfg: RepoRayConfig, run_dir: str, methods: list[Method] | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Train every method, evaluate all, write RUN/compare/compare.md and compare.html."""
    from repo_ray.eval.compare_report import MethodResult, write_compare_report

    methods = methods or list(METHODS.values())
    started = time.perf_counter()
    rd = RunDir(run_dir)
    init_ray(cfg.pipeline.ray_address)
    rd.write_manifest(cfg.model_dump(mode="json"))
    say(f"compare {', '.join(m.name for m in methods)} -> {rd.uri}")
    data_dir, data_key = stage_data(cfg, rd)
    base, base_key = stage_base(cfg, rd, data_dir)
    sft_model, sft_key = stage_sft(cfg, rd, data_dir, data_key, base, base_key)
    needs_rm = any(m.kind == "rl" for m in methods)
    rm_dir, rm_key = stage_rm(cfg, rd, data_dir, data_key, sft_model, sft_key) if needs_rm else (None, "")
    rl_methods = [m for m in methods if m.kind == "rl"]
    sides: list[RewardSide] = []

    def reward_side() -> RewardSide:
        if not sides:
            judge = any("judge" in method_config(cfg, m).reward.sources for m in rl_methods)
            sides.append(start_reward_side(cfg, rm_dir, f"{run_id_for(cfg, rd)}-compare", judge=judge))
        return sides[0]

    trained: list[Trained] = []
    try:
        for m in methods:
            t0 = time.perf_counter()
            if m.kind == "base":
                t = Trained(m, base.policy, base.tokenizer, None, base_key, [], {})
            elif m.kind == "sft":
                t = Trained(m, sft_model, sft_model, None, sft_key, [], {})
            elif m.kind == "dpo":
                adapter, key, info = stage_dpo(cfg, rd, data_dir, data_key, sft_model, sft_key)
                t = Trained(m, sft_model, sft_model, adapter, key, [], info)
            else:
                adapter, key, steps = stage_rl_method(cfg, rd, m, data_dir, sft_model, sft_key, rm_dir, rm_key,
                                                      progress, reward_side)
                if adapter is None:
                    raise CompareError(f"{m.name}: the RL stage ended before its first step (no adapter)")
                t = Trained(m, sft_model, sft_model, adapter, key, steps,
                            {"samples": sum(int(s.get(COLUMNS.samples) or 0) for s in steps)})
            t.info["train_s"] = round(time.perf_counter() - t0, 1)
            trained.append(t)
    finally:
        for side in sides:
            side.close()
    results = [MethodResult(t.method.name, t.method.summary, t.method.kind, t.method.ablation, ev, t.steps, t.info)
               for t, ev in zip(trained, stage_evals(cfg, rd, trained, data_dir, data_key), strict=True)]
    if cfg.eval.expert_row:  # the ceiling: the data generator's scripted agent through the same harness
        from repo_ray.domain.schemas import load_rows
        from repo_ray.eval.harness import expert_row

        t0 = time.perf_counter()
        for name, ev in expert_row(cfg, load_rows("eval", data_dir).rows, load_rows("bad_cases", data_dir).rows,
                                   cfg.seed, taken=[r.name for r in results]).items():
            results.append(MethodResult(name, "scripted expert of the data generator (reference, not trained)",
                                        "reference", False, ev, [], {"train_s": 0.0}))
        say(f"eval expert (scripted ceiling): {time.perf_counter() - t0:.0f}s")
    out = rd.local("compare")
    md, html = write_compare_report(out, results, budget=sample_budget(cfg), config_name=cfg.name)
    rd.sync_up(out, "compare")
    summary = {"run_dir": rd.uri, "methods": [m.name for m in methods], "report": str(md), "html": str(html),
               "wall_s": round(time.perf_counter() - started, 1)}
    rd.write_json(summary, "compare", "summary.json")
    return summary


__all__ = ["METHODS", "CompareError", "Method", "compare", "method_config", "parse_methods", "sample_budget"]
