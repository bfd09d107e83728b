"""The method presets of `repo-ray compare` (what each method trains on and how), kept free
of the pipeline's imports so the CLI can list them without loading Ray or torch."""

from __future__ import annotations

from dataclasses import dataclass

from repo_ray.config import RepoRayConfig, apply_overrides, config_from_dict
from repo_ray.errors import UserError

ALL_SOURCES = "[rm, judge, rules]"


class CompareError(UserError, ValueError):
    """A compare request that cannot run (unknown method, empty budget)."""


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "base" | "sft" | "dpo" | "rl"
    summary: str
    overrides: tuple[str, ...] = ()  # KEY.PATH=VALUE over the run's config (RL methods)
    ablation: bool = False


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("base", "base", "the untrained base model"),
    Method("sft", "sft", "LoRA SFT on the expert dialogues, merged; every other method starts here"),
    Method("dpo", "dpo", "DPO on the preference pairs against the SFT model"),
    Method("ppo", "rl", "PPO + GAE + value model on R_model, KL to SFT",
           ("learner.algorithm=ppo", f"reward.sources={ALL_SOURCES}")),
    Method("grpo", "rl", "GRPO (group-relative advantages, no value model) on R_model",
           ("learner.algorithm=grpo", "learner.grpo.reward=rm", f"reward.sources={ALL_SOURCES}")),
    Method("repo", "rl", "REPO: PPO + GAE on R_total (RM enhanced by judge and rules), no KL",
           ("learner.algorithm=repo", f"reward.sources={ALL_SOURCES}")),
    Method("repo_rm", "rl", "REPO's algorithm, RM only", ("learner.algorithm=repo", "reward.sources=[rm]"), True),
    Method("repo_rm_judge", "rl", "REPO's algorithm, RM enhanced by the judge only",
           ("learner.algorithm=repo", "reward.sources=[rm, judge]"), True),
    Method("repo_rm_rules", "rl", "REPO's algorithm, RM enhanced by the rules only",
           ("learner.algorithm=repo", "reward.sources=[rm, rules]"), True),
    Method("grpo_enhanced", "rl", "GRPO on R_total (the enhanced reward)",
           ("learner.algorithm=grpo", "learner.grpo.reward=enhanced", f"reward.sources={ALL_SOURCES}"), True),
)}


def parse_methods(names: str | None) -> list[Method]:
    if not names:
        return list(METHODS.values())
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in METHODS]
    if unknown:
        raise CompareError(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(METHODS)}")
    return [METHODS[n] for n in dict.fromkeys(wanted)]


def method_config(cfg: RepoRayConfig, m: Method) -> RepoRayConfig:
    """The run's config with the method's overrides, no frozen control, one final checkpoint."""
    steps = cfg.learner.max_steps or 10**9
    data = apply_overrides(cfg.model_dump(mode="json"), [*m.overrides, "pipeline.frozen_control=false",
                                                         f"pipeline.checkpoint_every={steps}"])
    return config_from_dict(data, source=f"compare method {m.name}")


def sample_budget(cfg: RepoRayConfig) -> int | None:
    """Samples every trained method gets: RL steps x batch size (None: RL runs its epochs)."""
    return cfg.learner.max_steps * cfg.learner.batch_size if cfg.learner.max_steps else None
