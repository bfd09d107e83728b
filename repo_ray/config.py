"""The config tree (DESIGN.md §6): one pydantic model, unknown keys rejected, paper defaults.

Defaults are the paper's (Qwen3-32B scale); `configs/demo.yaml` overrides them for a
CPU laptop. `load_config` turns any problem with a file into a `ConfigError` whose
message is one line naming the file, the field path and the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from repo_ray.domain.rubric import (
    DEFAULT_EXTRA_ITEM_WEIGHT,
    DEFAULT_EXTRA_RULE_WEIGHT,
    DEFAULT_JUDGE_WEIGHTS,
    DEFAULT_RULE_WEIGHTS,
    JUDGE_ITEMS,
    RULES,
)
from repo_ray.errors import ConfigError
from repo_ray.hashing import content_hash


def _known_names(v: dict[str, float], known: dict[str, str], what: str) -> dict[str, float]:
    """Weights may only name registered rules / rubric items (one check for every weights field)."""
    unknown = sorted(set(v) - set(known))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; known: {sorted(known)}")
    return v


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --------------------------------------------------------------------------- model
class TinyModelConfig(_Section):
    """Architecture of the tiny Qwen3 models built locally when no model path is given."""

    vocab_size: int = Field(1024, ge=300, description="BPE vocabulary size of the locally trained tokenizer")
    hidden_size: int = Field(128, ge=16, description="transformer width")
    num_hidden_layers: int = Field(2, ge=1, description="transformer layers")
    num_attention_heads: int = Field(4, ge=1, description="query heads")
    num_key_value_heads: int = Field(2, ge=1, description="key/value heads (grouped-query attention)")
    head_dim: int = Field(32, ge=4, description="per-head dimension")
    intermediate_size: int = Field(256, ge=16, description="MLP width")
    max_position_embeddings: int = Field(4096, ge=128, description="longest sequence the model accepts")
    tokenizer_corpus_limit: int = Field(
        20000, ge=100, description="at most this many generated texts train the tokenizer"
    )
    pretrain_steps: int = Field(
        0, ge=0,
        description="full-parameter LM steps on the corpus after the random init, so the tiny base is a "
        "pretrained model (LoRA on a random base barely learns); 0 keeps it random",
    )
    pretrain_lr: float = Field(3e-3, gt=0, description="learning rate of that pretraining")

    @model_validator(mode="after")
    def _heads_divide(self) -> TinyModelConfig:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        return self


class ModelConfig(_Section):
    """Which base model the run starts from."""

    path: str | None = Field(
        None,
        description="local directory or hub id of the base policy (e.g. Qwen/Qwen3-32B); null builds the tiny model",
    )
    tokenizer_path: str | None = Field(None, description="tokenizer location; null means the same as `path`")
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig, description="tiny model built when `path` is null")
    cache_dir: str = Field(
        "runs/.model-cache", description="where built tokenizers and tiny models are cached, keyed by their inputs"
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field("bfloat16", description="weights dtype")
    trust_remote_code: bool = Field(False, description="passed to transformers when loading `path`")


# --------------------------------------------------------------------------- data
class DataConfig(_Section):
    """Synthetic data generation (or the directory of real data in the same schema)."""

    dir: str | None = Field(
        None, description="directory with the Parquet files; null generates them into RUN/data with the settings below"
    )
    seed: int = Field(0, description="seed of the generator; the same seed gives the same files")
    zh_fraction: float = Field(0.2, ge=0.0, le=1.0, description="share of scenarios conducted in Chinese")
    max_room_types: int = Field(3, ge=1, le=6, description="room types per scenario are drawn from 1..this")
    sft_dialogues: int = Field(2000, ge=1, description="expert dialogues for SFT")
    preference_pairs: int = Field(6632, ge=1, description="chosen/rejected pairs (paper: 6,632)")
    rl_scenarios: int = Field(2000, ge=1, description="scenarios the RL stage plays")
    eval_dialogues: int = Field(30, ge=1, description="held-out evaluation scenarios (paper: 30)")
    bad_cases: int = Field(45, ge=1, description="bad-case contexts with a defective response (paper: 45)")


# --------------------------------------------------------------------------- rollout
class VLLMConfig(_Section):
    """vLLM engine settings (rollout.backend = vllm)."""

    tensor_parallel_size: int = Field(1, ge=1, description="GPUs per rollout worker")
    max_model_len: int = Field(8192, ge=256, description="longest prompt + response")
    gpu_memory_utilization: float = Field(0.85, gt=0.0, le=1.0, description="share of GPU memory vLLM may take")
    max_lora_rank: int = Field(64, ge=1, description="largest LoRA rank the engine accepts")
    enforce_eager: bool = Field(False, description="disable CUDA graphs (faster start, slower decode)")


class RolloutConfig(_Section):
    """How rollout workers play negotiations against the hotel simulator."""

    backend: Literal["hf", "vllm"] = Field("hf", description="hf: transformers generate (CPU/GPU); vllm: vLLM engine")
    num_workers: int = Field(2, ge=1, description="RolloutWorker actors")
    num_cpus_per_worker: float = Field(1.0, gt=0, description="Ray CPUs each worker reserves")
    num_gpus_per_worker: float = Field(0.0, ge=0,
                                       description="Ray GPUs each worker reserves (vLLM: tensor_parallel_size)")
    scenarios_per_batch: int = Field(16, ge=1, description="negotiations a worker plays at once (one batched generate)")
    max_new_tokens: int = Field(512, ge=1, description="max response tokens per agent turn (paper: 512)")
    max_prompt_tokens: int = Field(
        4096, ge=64, description="context budget; oldest turns are dropped, system prompt and scenario kept"
    )
    max_turns: int = Field(
        8, ge=1, description="agent turns per negotiation, in RL rollouts and in evaluation alike (one horizon)"
    )
    stop_when_settled: bool = Field(
        False,
        description="end a negotiation once every room type is agreed or refused, in RL and evaluation alike; false: "
        "the agent goes on to confirm and close (those turns are then trained as well as evaluated)",
    )
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature (logprobs use logits / temperature)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling")
    top_k: int = Field(0, ge=0, description="top-k sampling; 0 disables")
    max_restarts: int = Field(3, ge=0, description="Ray restarts of a dead worker")
    adapter_logprob_tolerance: float = Field(
        1e-3, gt=0, description="max |worker - learner| probe logprob after an adapter push"
    )
    vllm: VLLMConfig = Field(default_factory=VLLMConfig, description="vLLM settings")


# --------------------------------------------------------------------------- reward
class RewardTimeouts(_Section):
    rm_s: float = Field(60.0, gt=0, description="per-sample reward-model scoring timeout")
    judge_s: float = Field(120.0, gt=0, description="per-sample judge timeout, retries included")
    rules_s: float = Field(10.0, gt=0, description="per-sample rule-check timeout")


class RewardModelTraining(_Section):
    """Bradley-Terry reward-model training on the preference pairs."""

    epochs: int = Field(1, ge=1, description="passes over the preference pairs")
    lr: float = Field(1e-5, gt=0, description="learning rate")
    batch_size: int = Field(32, ge=1, description="pairs per optimizer step")
    gradient_checkpointing: bool = Field(
        False, description="recompute each block's activations in the backward pass (as learner.gradient_"
        "checkpointing): a batch of pairs is 2 x batch_size sequences in one forward",
    )
    max_tokens: int = Field(
        1024, ge=32, description="context + reply tokens per side; system prompt kept, oldest turns dropped first"
    )
    holdout_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="share of scenarios whose pairs are held out to report RM accuracy"
    )
    finetune: Literal["lora", "full"] = Field(
        "lora",
        description="lora: LoRA (learner.lora) + a trainable score head, merged after training; "
        "full: every weight (faster and better for the tiny models)",
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs for the RMScorer actor")


class RewardConfig(_Section):
    """How the three sources combine: R_total = R_model + |R_model| * clip(E_judge + E_func, -n, n) / n."""

    n: float = Field(100.0, gt=0, description="enhancement scale: E_enh is clipped to [-n, n]")
    sources: list[Literal["rm", "judge", "rules"]] = Field(
        default_factory=lambda: ["rm", "judge", "rules"],
        description="enabled sources (ablations: [rm], [rm, judge], [rm, rules]); rm is required",
    )
    extra_rules: list[str] = Field(
        default_factory=list,
        description="plug-in RF rules by import path ('package.module:function' or 'file.py:function'): pure "
        "fn(response, RuleContext) -> RuleResult with score in [-2, 0] (up to the function's `bonus` attribute "
        "where it documents one), named by the function; weight reward.rule_weights[name], default "
        f"{DEFAULT_EXTRA_RULE_WEIGHT:g}; the module must be importable on every Ray node (README, 'Plug-in rewards')",
    )
    rule_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_RULE_WEIGHTS), description="weight of each RF rule in E_func"
    )
    judge_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_JUDGE_WEIGHTS), description="weight of each rubric item in E_judge"
    )
    rm_normalization: Literal["zscore", "none"] = Field(
        "zscore", description="zscore: R_model standardised against a reference set so its sign means better/worse"
    )
    failure_policy: Literal["mask", "partial"] = Field(
        "mask",
        description="judge/rule failure: mask drops the sample; partial enhances from the sources that answered",
    )
    overlength_chars: int = Field(600, ge=1, description="character budget of the overlength rule")
    timeouts: RewardTimeouts = Field(default_factory=RewardTimeouts, description="per-source timeouts")
    num_rule_checkers: int = Field(1, ge=1, description="RuleChecker actors")
    model: RewardModelTraining = Field(default_factory=RewardModelTraining, description="reward model training")

    @field_validator("sources")
    @classmethod
    def _rm_first(cls, v: list[str]) -> list[str]:
        if "rm" not in v:
            raise ValueError("'rm' must be enabled: judge and rule scores scale the RM score")
        if len(set(v)) != len(v):
            raise ValueError("sources listed twice")
        return v

    @field_validator("extra_rules")
    @classmethod
    def _load_extra_rules(cls, v: list[str]) -> list[str]:
        from repo_ray.plugins import load_rules  # imports the user's modules: here, so a bad one fails at load

        return load_rules(v, RULES)

    @field_validator("rule_weights")
    @classmethod
    def _known_rules(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        from repo_ray.plugins import plugin_rule_name

        extra = {plugin_rule_name(s): "plug-in" for s in info.data.get("extra_rules", [])}
        return _known_names(v, {**RULES, **extra}, "rule")

    @model_validator(mode="after")
    def _extra_rule_weights(self) -> RewardConfig:
        from repo_ray.plugins import plugin_rule_name

        for spec in self.extra_rules:  # in place: the dict is this config's own
            self.rule_weights.setdefault(plugin_rule_name(spec), DEFAULT_EXTRA_RULE_WEIGHT)
        return self

    @field_validator("judge_weights")
    @classmethod
    def _known_items(cls, v: dict[str, float]) -> dict[str, float]:
        return _known_names(v, JUDGE_ITEMS, "rubric item")


# --------------------------------------------------------------------------- judge
class JudgeRateLimit(_Section):
    """Cluster-wide token bucket shared by every judge replica."""

    requests_per_s: float = Field(10.0, gt=0, description="sustained request rate")
    tokens_per_min: float = Field(200_000.0, gt=0, description="sustained prompt + completion tokens per minute")
    burst: int = Field(10, ge=1, description="requests allowed at once above the sustained rate")
    backoff_factor: float = Field(0.5, gt=0, lt=1, description="rate multiplier after a 429")
    recovery_s: float = Field(30.0, gt=0, description="time to climb back to the full rate after a 429")


class JudgeBudget(_Section):
    """Spend cap; once reached, judge results are masked (status budget_exhausted)."""

    max_calls: int | None = Field(None, ge=1, description="most judge calls in a run; null for no cap")
    max_tokens: int | None = Field(None, ge=1, description="most judge tokens in a run; null for no cap")


class JudgeAutoscaling(_Section):
    """Ray Serve autoscaling_config of the judge deployment."""

    min_replicas: int = Field(1, ge=0, description="fewest judge replicas")
    max_replicas: int = Field(8, ge=1, description="most judge replicas")
    initial_replicas: int | None = Field(None, ge=0, description="replicas at start; null means min_replicas")
    target_ongoing_requests: float = Field(2.0, gt=0, description="requests per replica Serve aims for")
    upscale_delay_s: float = Field(5.0, ge=0, description="sustained load needed before adding replicas")
    downscale_delay_s: float = Field(60.0, ge=0, description="sustained idleness needed before removing replicas")
    max_ongoing_requests: int = Field(8, ge=1, description="requests a replica takes at once")
    num_cpus_per_replica: float = Field(0.1, gt=0, description="Ray CPUs each replica reserves")
    resources_per_replica: dict[str, float] = Field(
        default_factory=dict,
        description="custom Ray resources each replica also reserves: on a cluster, one only the judge worker group "
        "offers keeps replicas on the pods that hold the API key (cluster/)",
    )

    @model_validator(mode="after")
    def _bounds(self) -> JudgeAutoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError("initial_replicas must lie within [min_replicas, max_replicas]")
        if any(v <= 0 for v in self.resources_per_replica.values()):
            raise ValueError("resources_per_replica amounts must be > 0")
        return self


class LocalJudgeServer(_Section):
    """The heuristic stand-in judge (`repo-ray judge-server`) the pipeline starts on 127.0.0.1."""

    enabled: bool = Field(False, description="start the local judge server and point base_url at it")
    port: int = Field(0, ge=0, le=65535, description="port on 127.0.0.1; 0 picks a free one")
    latency_s: float = Field(0.0, ge=0, description="added latency per request")
    rate_limit_rps: float | None = Field(None, gt=0, description="answer 429 + Retry-After above this rate")
    error_rate: float = Field(0.0, ge=0, le=1, description="share of requests answered with a 5xx")
    hang_rate: float = Field(0.0, ge=0, le=1, description="share of requests that never answer")
    malformed_rate: float = Field(0.0, ge=0, le=1, description="share of answers that are not valid JSON")
    gullible: bool = Field(
        False, description="obey instructions found outside the prompt's data block (tests the prompt builder)"
    )


class RubricItem(_Section):
    """A rubric item added to the training judge's rubric (judge.extra_items): its line joins
    the prompt, its name the answer's JSON schema (required, like the built-in items)."""

    name: str = Field(..., pattern=r"^[a-z][a-z0-9_]*$", description="item key in the judge's answer")
    prompt: str = Field(..., min_length=1, description="the line the judge reads, e.g. 'never offers coupon codes'")
    weight: float = Field(DEFAULT_EXTRA_ITEM_WEIGHT, description="weight in E_judge (scores lie in [-10, 10])")
    heuristic: str | None = Field(
        None,
        description="for the local heuristic judge: 'package.module:function' scoring fn(payload) -> (score or "
        "None, reason) or a score, payload being the prompt's decoded data block; null: the local judge answers null",
    )

    @field_validator("name")
    @classmethod
    def _not_builtin(cls, v: str) -> str:
        if v in JUDGE_ITEMS:
            raise ValueError(f"{v!r} is a built-in rubric item (weigh it with reward.judge_weights)")
        return v

    @field_validator("heuristic")
    @classmethod
    def _load_heuristic(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from repo_ray.plugins import canonical_spec, resolve_heuristic

        resolve_heuristic(v)
        return canonical_spec(v)


class JudgeConfig(_Section):
    """The LLM judge (RJ): any OpenAI-compatible /v1/chat/completions endpoint."""

    base_url: str = Field("http://127.0.0.1:8400/v1", description="API base URL (vLLM OpenAI server or compatible)")
    model: str = Field("repo-judge", description="model name sent to the API")
    api_key_env: str | None = Field(
        "REPO_RAY_JUDGE_API_KEY", description="environment variable holding the API key; null sends none"
    )
    rubric_version: str = Field("v1", description="rubric version; part of the cache key")
    temperature: float = Field(0.0, ge=0, description="judge sampling temperature")
    max_tokens: int = Field(512, ge=16, description="judge completion token cap")
    response_format: Literal["auto", "json_schema", "json_object"] = Field(
        "auto", description="what the judge is asked to answer in: json_schema (structured output built from "
        "the rubric: what makes a small judge usable), json_object, or auto: json_schema until the server "
        "refuses it with a 400/422 naming it, then json_object for that caller",
    )
    timeout_s: float = Field(30.0, gt=0, description="per-call HTTP timeout")
    max_retries: int = Field(4, ge=0, description="retries after timeouts, 429s and 5xx")
    backoff_base_s: float = Field(0.5, gt=0, description="first retry delay (doubles, with jitter)")
    backoff_max_s: float = Field(20.0, gt=0, description="longest retry delay")
    cache: bool = Field(True, description="cache answers by (prompt, rubric_version, model)")
    rate_limit: JudgeRateLimit = Field(default_factory=JudgeRateLimit, description="cluster-wide rate limit")
    budget: JudgeBudget = Field(default_factory=JudgeBudget, description="spend cap")
    autoscaling: JudgeAutoscaling = Field(default_factory=JudgeAutoscaling, description="Serve autoscaling")
    local_server: LocalJudgeServer = Field(default_factory=LocalJudgeServer, description="local stand-in judge")
    extra_items: list[RubricItem] = Field(
        default_factory=list,
        description="rubric items added to the training judge's rubric: {name, prompt, weight (default "
        f"{DEFAULT_EXTRA_ITEM_WEIGHT:g}), heuristic (optional import path for the local judge)}}; the evaluation "
        "judge keeps its own rubric",
    )

    @field_validator("extra_items")
    @classmethod
    def _unique_items(cls, v: list[RubricItem]) -> list[RubricItem]:
        names = [i.name for i in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rubric item(s) {dup} listed twice")
        return v


# --------------------------------------------------------------------------- learner
class LoraSettings(_Section):
    r: int = Field(64, ge=1, description="LoRA rank (paper: 64)")
    alpha: int = Field(64, ge=1, description="LoRA alpha (paper: 64)")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    target_modules: list[str] | Literal["auto"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="module names LoRA wraps; auto: every linear layer of the model's blocks (not the LM or "
        "score head), read from the model itself",
    )


class OptimizerSettings(_Section):
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate (paper: 1e-6 for 32B; tiny models need ~1e-3)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon")
    warmup_steps: int = Field(2, ge=0, description="linear warmup in optimizer steps (paper: 2)")
    grad_clip: float = Field(1.0, gt=0, description="max gradient norm")


class PPOSettings(_Section):
    ppo_epochs: int = Field(1, ge=1, description="passes over each batch")
    clip_eps: float = Field(0.2, gt=0, description="policy ratio clip")
    value_clip_eps: float = Field(
        0.2, gt=0, description="value prediction clip around the old value (bench/credit_assignment.py: it "
        "never bound at these learning rates; kept as a guard)"
    )
    gamma: float = Field(1.0, gt=0, le=1, description="discount within a turn")
    lam: float = Field(
        1.0, ge=0, le=1, description="GAE lambda; 1 gives the reward-deciding early tokens of a turn the full "
        "terminal signal before the critic has learnt (bench/credit_assignment.py)"
    )
    vf_coef: float = Field(0.5, ge=0, description="value loss weight")
    value_lr: float | None = Field(None, gt=0, description="value model learning rate; null uses optimizer.lr")
    entropy_coef: float = Field(0.0, ge=0, description="entropy bonus weight")
    kl_coef: float = Field(
        0.05, ge=0, description="KL penalty to the SFT reference (algorithm ppo only; repo has none)"
    )
    kl_estimator: Literal["k1", "k2", "k3"] = Field(
        "k3", description="KL estimator of the kl_to_sft metric (every mode) and of grpo's KL loss term; "
        "ppo's per-token penalty in the reward is always k1 = logp - ref_logp"
    )
    advantage_estimator: str = Field(
        "gae", description="registered advantage estimator of repo / ppo (algos.ADV_ESTIMATORS; grpo uses 'grpo')"
    )
    policy_loss: str = Field("ppo_clip", description="registered policy loss (algos.POLICY_LOSSES)")
    whiten_advantages: bool = Field(True, description="standardise advantages over the batch")
    off_policy_correction: Literal["none", "tis", "decoupled"] = Field(
        "decoupled",
        description="correction of stale samples (every RL mode) by w = exp(recomputed - rollout logprob) per token: "
        "decoupled (AReaL) weights the loss by w and drops tokens with w > is_cap; tis (verl) weights by "
        "min(w, is_cap); none ignores the rollout logprobs (logged only)",
    )
    is_cap: float = Field(5.0, gt=1, description="importance-weight cap of off_policy_correction")

    @field_validator("advantage_estimator")
    @classmethod
    def _registered_estimator(cls, v: str) -> str:
        from repo_ray.algos.advantages import ADV_ESTIMATORS, estimator_needs_values  # torch: only when set

        if v not in ADV_ESTIMATORS:
            raise ValueError(f"unknown advantage estimator {v!r}; known: {', '.join(sorted(ADV_ESTIMATORS))}")
        if not estimator_needs_values(v):
            raise ValueError(f"{v!r} uses no value model, but repo / ppo train one; use algorithm grpo for it")
        return v

    @field_validator("policy_loss")
    @classmethod
    def _registered_loss(cls, v: str) -> str:
        from repo_ray.algos.losses import POLICY_LOSSES

        if v not in POLICY_LOSSES:
            raise ValueError(f"unknown policy loss {v!r}; known: {', '.join(sorted(POLICY_LOSSES))}")
        return v


class GRPOSettings(_Section):
    group_size: int = Field(
        4, ge=2, description="responses sampled per agent-turn context (k); a batch holds whole groups "
        "(learner.batch_size a multiple of k) and a group with a masked member is dropped whole (its siblings "
        "discarded in the ledger): a smaller group's baseline would be taken over the replies that got scored",
    )
    reward: Literal["rm", "enhanced"] = Field("rm", description="rm: R_model only; enhanced: R_total (ablation)")
    clip_eps: float = Field(0.2, gt=0, description="policy ratio clip")
    kl_coef: float = Field(0.0, ge=0, description="KL penalty to the SFT reference")
    std_normalize: bool = Field(True, description="divide group-centred rewards by the group std")


class DPOSettings(_Section):
    beta: float = Field(0.1, gt=0, description="DPO temperature")
    epochs: int = Field(10, ge=1, description="passes over the preference pairs (paper: 10)")
    lr: float | None = Field(None, gt=0, description="null uses optimizer.lr")
    max_tokens: int = Field(
        2048, ge=32, description="context + reply tokens per side; the oldest context tokens are dropped"
    )


class SFTSettings(_Section):
    epochs: int = Field(10, ge=1, description="passes over the SFT dialogues (paper: 10)")
    lr: float | None = Field(None, gt=0, description="null uses optimizer.lr")
    max_tokens: int = Field(2048, ge=32, description="tokens kept per training example")


class LearnerConfig(_Section):
    """The DeepSpeed LoRA learner group."""

    algorithm: Literal["repo", "ppo", "grpo"] = Field("repo", description="RL algorithm of the train stage")
    world_size: int = Field(1, ge=1, description="DeepSpeed ranks (Ray actors in one placement group)")
    zero_stage: Literal[0, 1, 2, 3] = Field(2, description="DeepSpeed ZeRO stage")
    dist_backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="auto: nccl on GPU, gloo on CPU")
    num_cpus_per_rank: float = Field(1.0, gt=0, description="Ray CPUs per rank")
    num_gpus_per_rank: float = Field(0.0, ge=0, description="Ray GPUs per rank")
    batch_size: int = Field(128, ge=1, description="samples (agent turns) per RL step (paper: 128)")
    micro_batch_size: int = Field(8, ge=1, description="samples per forward/backward on one rank")
    gradient_checkpointing: bool = Field(
        False, description="recompute each block's activations in the backward pass (HF gradient checkpointing, "
        "non-reentrant) for the policy and value models: less activation memory, ~1/3 more compute; the same "
        "gradients",
    )
    rl_epochs: int = Field(2, ge=1, description="passes over the RL scenarios (paper: 2)")
    max_steps: int | None = Field(None, ge=1, description="stop after this many RL steps; null runs rl_epochs")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA on policy and value")
    optimizer: OptimizerSettings = Field(default_factory=OptimizerSettings, description="AdamW settings")
    ppo: PPOSettings = Field(default_factory=PPOSettings, description="PPO / REPO settings")
    grpo: GRPOSettings = Field(default_factory=GRPOSettings, description="GRPO settings")
    dpo: DPOSettings = Field(default_factory=DPOSettings, description="DPO baseline")
    sft: SFTSettings = Field(default_factory=SFTSettings, description="SFT stage")

    @model_validator(mode="after")
    def _batch_divides(self) -> LearnerConfig:
        per_step = self.micro_batch_size * self.world_size
        if self.batch_size % per_step:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of micro_batch_size x world_size = {per_step}"
            )
        if self.algorithm == "grpo" and self.batch_size % self.grpo.group_size:
            raise ValueError(  # pipeline/loop.py select_batch: a GRPO batch holds whole groups
                f"batch_size {self.batch_size} is not a multiple of grpo.group_size {self.grpo.group_size}: "
                "a GRPO batch holds whole groups"
            )
        return self

    @property
    def grad_accumulation_steps(self) -> int:
        return self.batch_size // (self.micro_batch_size * self.world_size)


# --------------------------------------------------------------------------- pipeline
class PipelineConfig(_Section):
    mode: Literal["async", "sync"] = Field("async", description="async overlaps generation with training")
    max_staleness: int = Field(1, ge=0, description="most adapter versions a trained sample may lag")
    checkpoint_every: int = Field(
        1, ge=1, description="RL steps between checkpoints (a LoRA checkpoint is small and does not drain an async "
        "run: the rollback after a learner rank dies then repeats at most one step)")
    alert_masked_share: float | None = Field(
        0.5, ge=0.0, le=1.0, description="alert (metric, console line, report) when a step's masked share passes "
        "this; null: never")
    frozen_control: bool = Field(True, description="also score a frozen-policy control on the same scenarios")
    ray_address: str | None = Field(None, description="cluster address; null uses RAY_ADDRESS or a local head")


# --------------------------------------------------------------------------- eval
class EvalJudgeConfig(_Section):
    """The evaluation judge: configured apart from the training judge so a policy cannot win by fitting it."""

    base_url: str | None = Field(None, description="null uses the built-in heuristic evaluation judge in-process")
    model: str = Field("repo-eval-judge", description="model name sent to the API")
    api_key_env: str | None = Field("REPO_RAY_EVAL_JUDGE_API_KEY", description="environment variable of its key")
    rubric_version: str = Field("eval-v1", description="evaluation rubric version")
    weights: dict[str, float] = Field(
        default_factory=lambda: {k: 1.0 for k in JUDGE_ITEMS}, description="its own rubric weights"
    )

    @field_validator("weights")
    @classmethod
    def _known_items(cls, v: dict[str, float]) -> dict[str, float]:
        return _known_names(v, JUDGE_ITEMS, "rubric item")


class HackingMonitorConfig(_Section):
    """The reward-hacking monitor (repo_ray/eval/hacking.py): flags a step when one reward source
    rose while another fell over the last `window` steps."""

    window: int = Field(8, ge=2, description="RL steps the monitor compares (first half vs second half)")
    threshold: float = Field(
        0.1, gt=0.0,
        description="change that counts, in R_total's terms: R_model in its own (z) units, E_judge and E_func as a "
        "share of reward.n; a flag needs one source up and another down by at least this much",
    )


class EvalConfig(_Section):
    judge: EvalJudgeConfig = Field(default_factory=EvalJudgeConfig, description="evaluation judge")
    decoding: Literal["greedy", "sampled"] = Field(
        "greedy", description="how evaluated policies write: greedy (argmax, top-k 1) or sampled at eval.temperature "
        "with rollout.top_p / top_k and a fixed seed"
    )
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature when eval.decoding is sampled")
    expert_row: bool = Field(
        True, description="also evaluate the data generator's scripted expert through the same harness (the ceiling)"
    )
    bootstrap_samples: int = Field(1000, ge=10, description="resamples for confidence intervals")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="interval coverage")
    task_min_dialogues: int = Field(
        24, ge=0, description="without a GPU, evaluate policies side by side as 1-CPU Ray tasks when there are at "
        "least this many evaluation dialogues; fewer are evaluated in the driver, one policy after another (a task "
        "costs a process start: ~8 s of CPU for torch and transformers on 2 cores). 0: always tasks"
    )
    excellent_threshold: float = Field(0.6, ge=-1.0, le=1.0, description="normalised judge score of an excellent reply")
    hacking_monitor: HackingMonitorConfig = Field(
        default_factory=HackingMonitorConfig, description="reward-hacking monitor over the RL steps"
    )

    @model_validator(mode="before")
    @classmethod
    def _one_horizon(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_turns" in data:
            raise ValueError("eval.max_turns is gone: evaluation plays rollout.max_turns and "
                             "rollout.stop_when_settled, the horizon and stop rule RL trains on")
        return data


# --------------------------------------------------------------------------- tracking
class WandbTracking(_Section):
    """Weights & Biases (the `wandb` extra); offline by default: RUN/wandb, `wandb sync` later."""

    enabled: bool = Field(False, description="log to W&B")
    project: str = Field("repo-ray", description="W&B project")
    entity: str | None = Field(None, description="W&B entity (team or user); null: the default")
    mode: Literal["offline", "online"] = Field(
        "offline", description="offline writes RUN/wandb only; online needs WANDB_API_KEY in the environment"
    )


class MLflowTracking(_Section):
    """MLflow (the `mlflow` extra: mlflow-skinny); a local file store in the run directory by default."""

    enabled: bool = Field(False, description="log to MLflow")
    tracking_uri: str | None = Field(
        None, description="tracking URI; null: the file store RUN/mlflow (local run directories only)"
    )
    experiment: str = Field("repo-ray", description="MLflow experiment name")


class TrackingConfig(_Section):
    """Experiment trackers of `repo-ray train`, all off by default: each RL step's row (rewards per
    source, masked share, learner diagnostics, throughput), the config and the evaluation summary."""

    tensorboard: bool = Field(False, description="TensorBoard event files in RUN/tensorboard (the `tensorboard` extra)")
    wandb: WandbTracking = Field(default_factory=WandbTracking, description="Weights & Biases")
    mlflow: MLflowTracking = Field(default_factory=MLflowTracking, description="MLflow")


# --------------------------------------------------------------------------- root
class RepoRayConfig(_Section):
    """Root of the config tree."""

    name: str = Field("repo", pattern=r"^[A-Za-z0-9_.-]+$", description="run name; part of the run id")
    seed: int = Field(0, description="global seed")
    run_dir: str | None = Field(None, description="absolute path or pyarrow.fs URI; the CLI's --run-dir wins")
    model: ModelConfig = Field(default_factory=ModelConfig, description="base model")
    data: DataConfig = Field(default_factory=DataConfig, description="data")
    rollout: RolloutConfig = Field(default_factory=RolloutConfig, description="rollout workers")
    reward: RewardConfig = Field(default_factory=RewardConfig, description="reward combination")
    judge: JudgeConfig = Field(default_factory=JudgeConfig, description="training judge")
    learner: LearnerConfig = Field(default_factory=LearnerConfig, description="learner group")
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, description="driver")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="evaluation")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="experiment trackers (off)")

    @model_validator(mode="after")
    def _cross_section(self) -> RepoRayConfig:
        if self.rollout.backend == "vllm" and self.model.path is None:
            raise ValueError("rollout.backend vllm needs model.path (the tiny model runs with hf)")
        if self.rollout.vllm.max_lora_rank < self.learner.lora.r and self.rollout.backend == "vllm":
            raise ValueError("rollout.vllm.max_lora_rank is below learner.lora.r")
        return self

    def stable_hash(self, *sections: str) -> str:
        """Hash of the given sections (all when none): the input hash that decides stage reuse."""
        data = self.model_dump(mode="json")
        if sections:
            data = {s: data[s] for s in sections}
        return content_hash(data)


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def validation_error_line(source: str, err: ValidationError) -> str:
    """One line: `SOURCE: field.path: reason` (+ how many more problems there are)."""
    errors = err.errors()
    first = errors[0]
    loc = first["loc"]
    if first["type"] == "extra_forbidden":
        reason = "unknown key"
    else:
        reason = first["msg"].removeprefix("Value error, ")
        if "input" in first and first["type"] not in ("missing",) and not isinstance(first["input"], (dict, list)):
            reason += f" (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return f"{source}: {_format_loc(loc)}: {reason}{more}"


def config_from_dict(data: Any, source: str = "<config>") -> RepoRayConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return RepoRayConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(validation_error_line(source, err)) from None


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (value parsed as YAML) to a nested dict."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source}: {item!r}: expected KEY.PATH=VALUE")
        key, raw = item.split("=", 1)
        try:
            value = _yaml_load(raw)
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{source}: {key}: {p} is not a section")
            node = child
        node[parts[-1]] = value
    return data


# A config is a few hundred YAML nodes; these bounds only stop a hostile or broken file
# (a "billion laughs" alias bomb, a huge blob) from taking the machine before validation.
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_NODES = 100_000  # nodes after alias expansion


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one in silence) and
    documents whose alias expansion passes MAX_YAML_NODES."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` then an override is how merge keys are meant to be used
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: the base constructor reports it
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        problem=f"duplicate key {key!r} (first at line {first.line + 1})",
                        problem_mark=key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: yaml.Node) -> None:
    """Count nodes as if every alias were copied out (memoised: linear in distinct nodes)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(n: yaml.Node) -> int:
        if id(n) in sizes:
            return sizes[id(n)]
        if id(n) in on_path:
            raise yaml.constructor.ConstructorError(problem="recursive alias", problem_mark=n.start_mark)
        on_path.add(id(n))
        if isinstance(n, yaml.SequenceNode):
            total = 1 + sum(size(c) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in n.value)
        else:
            total = 1
        on_path.discard(id(n))
        if total > MAX_YAML_NODES:
            raise yaml.constructor.ConstructorError(
                problem=f"aliases expand to more than {MAX_YAML_NODES:,} nodes (an alias bomb?)",
                problem_mark=n.start_mark)
        sizes[id(n)] = total
        return total

    size(root)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


def _yaml_error_line(source: str, err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{source}: invalid YAML: {where}{problem}"


def load_config(path: str | Path, overrides: list[str] | None = None) -> RepoRayConfig:
    """Load and validate a YAML config; every failure is a one-line ConfigError. An empty file
    is an error (it would otherwise run the paper-scale defaults), and so is a duplicate key."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, not a config file")
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"{p}: cannot read ({err.strerror or err})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: {len(raw):,} bytes; a config is at most {MAX_CONFIG_BYTES:,}")
    try:
        data = _yaml_load(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{p}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except yaml.YAMLError as err:
        raise ConfigError(_yaml_error_line(str(p), err)) from None
    except RecursionError:
        raise ConfigError(f"{p}: invalid YAML: nested too deeply") from None
    if data is None:
        raise ConfigError(f"{p}: empty config (no keys); write the fields to change, e.g. `name: my-run` "
                          "(an explicit `{}` runs the paper-scale defaults)")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping, got {type(data).__name__}")
    data = apply_overrides(data, overrides or [])
    return config_from_dict(data, source=str(p))


def config_reference_markdown() -> str:
    """The README's config reference, generated from the field descriptions."""
    lines = ["| key | default | description |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            key = f"{prefix}{name}"
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, key + ".")
                continue
            default = f.get_default(call_default_factory=True)
            if isinstance(default, dict) and len(default) > 3:
                shown = "{…}" if default else "{}"
            else:
                shown = json.dumps(default, default=str)
            desc = (f.description or "").replace("|", "\\|")
            lines.append(f"| `{key}` | `{shown}` | {desc} |")

    walk(RepoRayConfig, "")
    return "\n".join(lines)
