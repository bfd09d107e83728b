"""One training step of every learner mode (repo, ppo, grpo, sft, dpo) over an `Engine`.

Pure torch, no Ray: DeepSpeed ranks (group.py) and the single-process `TorchEngine`
(tests, notebooks) run the very same functions. A step gets the WHOLE batch plus its
rank and world size, trains on rows rank, rank + W, rank + 2W, ... split into the
engine's gradient-accumulation micro-batches, and returns sums that `summarize_*` turns
into typed metrics.

Loss normalisation: every loss is a mean over the trainable tokens (pairs, for DPO) of
the whole global batch. A micro-batch with n tokens backpropagates
`mean_loss(micro) * n * gas * W / N_global`; the engine divides by gas (DeepSpeed's
scale_wrt_gas) and all-reduce averages over W ranks, so the optimizer sees exactly
sum_over_tokens / N_global whatever the world size or micro-batch split: world size 1
and 2 give the same update up to float summation order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch
from torch import nn

from repo_ray.algos import (
    AdvantageInputs,
    ImportanceWeights,
    behaviour_importance_weights,
    dpo_loss,
    entropy_from_logits,
    estimate_advantages,
    get_policy_loss,
    kl_estimate,
    masked_mean,
    masked_sum,
    masked_whiten_across_ranks,
    sequence_logprobs,
    terminal_rewards,
    value_loss,
)
from repo_ray.config import LearnerConfig, OptimizerSettings
from repo_ray.learner.batch import TokenBatch
from repo_ray.learner.models import trainable_parameters

AllReduce = Callable[[torch.Tensor], torch.Tensor]  # in-place sum over ranks; identity in one process
RL_ALGORITHMS = ("repo", "ppo", "grpo")


def _no_reduce(t: torch.Tensor) -> torch.Tensor:
    return t


# --------------------------------------------------------------------------- engines
class Engine(Protocol):
    """What a step needs from model + optimizer; DeepSpeed's engine (wrapped in group.py)
    and `TorchEngine` both provide it. `step()` is called after every micro-batch's
    backward and returns the pre-clip global grad norm when it ended an accumulation
    window (an optimizer step happened), else None."""

    module: nn.Module
    gradient_accumulation_steps: int

    def __call__(self, *args, **kwargs): ...
    def backward(self, loss: torch.Tensor) -> None: ...
    def step(self) -> float | None: ...
    def get_lr(self) -> list[float]: ...


def make_optimizer(params: Sequence[nn.Parameter], lr: float, opt: OptimizerSettings) -> torch.optim.AdamW:
    # A plain torch AdamW: DeepSpeed's CPUAdam/FusedAdam JIT-compile for 40+ s on CPU.
    return torch.optim.AdamW(list(params), lr=lr, betas=tuple(opt.betas), eps=opt.eps,
                             weight_decay=opt.weight_decay)


def warmup_factor(warmup_steps: int) -> Callable[[int], float]:
    """Linear warmup: optimizer step k (from 0) runs at lr * min(1, (k + 1) / warmup_steps)."""
    return lambda k: 1.0 if warmup_steps <= 0 else min(1.0, (k + 1) / warmup_steps)


def make_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_factor(warmup_steps))


class TorchEngine:
    """A single-process Engine: AdamW, linear warmup, grad clipping, gradient accumulation
    with DeepSpeed's conventions (backward divides the loss by gas; the optimizer steps on
    every gas-th `step()`)."""

    def __init__(self, module: nn.Module, lr: float, opt: OptimizerSettings, gradient_accumulation_steps: int = 1):
        self.module = module
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self.params = trainable_parameters(module)
        self.optimizer = make_optimizer(self.params, lr, opt)
        self.scheduler = make_scheduler(self.optimizer, opt.warmup_steps)
        self.grad_clip = opt.grad_clip
        self.micro_steps = 0
        self.global_steps = 0

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.gradient_accumulation_steps).backward()

    def step(self) -> float | None:
        self.micro_steps += 1
        if self.micro_steps % self.gradient_accumulation_steps:
            return None
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_steps += 1
        return norm

    def get_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]


# --------------------------------------------------------------------------- helpers
def shard_rows(n: int, rank: int, world_size: int) -> list[int]:
    """This rank's rows of a global batch: a deterministic stride, so ranks never overlap."""
    return list(range(rank, n, world_size))


def micro_batches(rows: Sequence[int], gas: int, lengths: Sequence[int] | None = None) -> list[list[int]]:
    """Exactly `gas` chunks (some may be empty): every rank must call backward the same
    number of times per optimizer step, or the collectives would not line up. With
    `lengths`, rows are grouped by length first, so a micro-batch pads little (the update
    does not depend on the grouping: losses are normalised over the global batch)."""
    if lengths is not None:
        rows = sorted(rows, key=lambda r: (lengths[r], r))
    size = math.ceil(len(rows) / gas) if rows else 0
    return [list(rows[i * size:(i + 1) * size]) for i in range(gas)]


def _row_lengths(batch: TokenBatch) -> list[int]:
    return (batch.prompt_lengths + batch.window_lengths).tolist()


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _zero_loss(module: nn.Module) -> torch.Tensor:
    # Backward of an empty micro-batch: zero gradients, but the collectives still run.
    return sum((p.sum() * 0.0 for p in trainable_parameters(module)), torch.zeros(()))


def window_logits(model: Callable, mb: TokenBatch) -> torch.Tensor:
    """[B, R, V] logits aligned with mb.labels: the last R + 1 columns' logits, the last one
    dropped (see batch.py). `logits_to_keep` spares the [B, P + R, V] tensor of the prompt."""
    r = mb.window
    out = model(**mb.model_inputs(), logits_to_keep=r + 1)
    return out.logits[:, -(r + 1):-1]


def _forward_logprobs(model: Callable, mb: TokenBatch, temperature: float, entropy: str = "none"
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Window token logprobs [B, R] and the per-token entropy of the sampling distribution
    when `entropy` is "grad" (part of the loss) or "metric" (no softmax kept for backward)."""
    logits = window_logits(model, mb)
    lp = sequence_logprobs(logits, mb.labels, mb.loss_mask, temperature)
    ent = None
    if entropy == "grad":
        ent = entropy_from_logits(logits.float() / temperature)
    elif entropy == "metric":
        with torch.no_grad():
            ent = entropy_from_logits(logits.detach().float() / temperature)
    return lp, ent


def window_values(model: Callable, mb: TokenBatch) -> torch.Tensor:
    """[B, R] values: V at the column before each window token (the state it is sampled in)."""
    r = mb.window
    return model(**mb.model_inputs())[:, -(r + 1):-1].float()


def policy_logprobs(module: nn.Module, mb: TokenBatch, temperature: float = 1.0, reference: bool = False
                    ) -> torch.Tensor:
    """No-grad token logprobs under the policy (or the reference: its adapter disabled)."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            if reference:
                with module.disable_adapter():
                    return _forward_logprobs(module, mb, temperature)[0]
            return _forward_logprobs(module, mb, temperature)[0]
    finally:
        module.train(was_training)


def value_predictions(module: nn.Module, mb: TokenBatch) -> torch.Tensor:
    """No-grad window values [B, R]."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            return window_values(module, mb)
    finally:
        module.train(was_training)


# --------------------------------------------------------------------------- RL
@dataclass(frozen=True)
class RLSettings:
    """The knobs of one RL mode, resolved from LearnerConfig (see `from_config`)."""

    algorithm: str
    clip_eps: float = 0.2
    value_clip_eps: float = 0.2
    gamma: float = 1.0
    lam: float = 1.0
    vf_coef: float = 0.5
    entropy_coef: float = 0.0
    kl_coef: float = 0.0  # ppo: per-token penalty in the reward; grpo: a loss term; repo: 0
    kl_estimator: str = "k3"  # the kl_to_sft metric and grpo's loss term; ppo's reward penalty is k1
    advantage_estimator: str = "gae"  # a name in algos.ADV_ESTIMATORS
    off_policy_correction: str = "decoupled"  # algos.OFF_POLICY_CORRECTIONS
    is_cap: float = 5.0
    whiten_advantages: bool = True
    ppo_epochs: int = 1
    policy_loss: str = "ppo_clip"
    grpo_std_normalize: bool = True
    temperature: float = 1.0

    @property
    def uses_value_model(self) -> bool:
        return self.algorithm in ("repo", "ppo")

    @classmethod
    def from_config(cls, learner: LearnerConfig, algorithm: str | None = None, temperature: float = 1.0) -> RLSettings:
        algorithm = algorithm or learner.algorithm
        if algorithm not in RL_ALGORITHMS:
            raise ValueError(f"{algorithm!r} is not an RL algorithm ({', '.join(RL_ALGORITHMS)})")
        ppo, grpo = learner.ppo, learner.grpo
        return cls(
            algorithm=algorithm,
            clip_eps=grpo.clip_eps if algorithm == "grpo" else ppo.clip_eps,
            value_clip_eps=ppo.value_clip_eps,
            gamma=ppo.gamma,
            lam=ppo.lam,
            vf_coef=ppo.vf_coef,
            entropy_coef=ppo.entropy_coef,
            kl_coef={"repo": 0.0, "ppo": ppo.kl_coef, "grpo": grpo.kl_coef}[algorithm],
            kl_estimator=ppo.kl_estimator,
            advantage_estimator="grpo" if algorithm == "grpo" else ppo.advantage_estimator,
            off_policy_correction=ppo.off_policy_correction,
            is_cap=ppo.is_cap,
            whiten_advantages=ppo.whiten_advantages,
            ppo_epochs=ppo.ppo_epochs,
            policy_loss=ppo.policy_loss,
            grpo_std_normalize=grpo.std_normalize,
            temperature=temperature,
        )


@dataclass
class RLStepStats:
    """One rank's sums over one RL step; `summarize_rl` combines ranks."""

    samples: int = 0
    tokens: int = 0
    reward_sum: float = 0.0
    # token-weighted sums (divide by the token count of the passes that produced them)
    policy_loss: float = 0.0
    clip_fraction: float = 0.0
    approx_kl: float = 0.0
    entropy: float = 0.0
    value_loss: float = 0.0
    value_clip_fraction: float = 0.0
    update_tokens: int = 0  # tokens x ppo_epochs
    kl_to_sft: float = 0.0  # token sum over the pre-update pass
    logprob_mismatch: float = 0.0  # token sum of |learner old logprob - rollout logprob|
    is_weight: float = 0.0  # token sum of exp(old - rollout logprob), before the cap
    is_weight_min: float = math.inf
    is_weight_max: float = -math.inf
    is_capped: int = 0  # tokens whose weight the cap changed
    advantage: float = 0.0  # token sum of advantages fed to the loss
    grad_norms: list[float] = field(default_factory=list)
    value_grad_norms: list[float] = field(default_factory=list)
    lr: float = 0.0


@dataclass(frozen=True)
class StepMetrics:
    """Per-step learner metrics (means over the batch's trainable tokens unless noted)."""

    algorithm: str
    policy_loss: float
    value_loss: float | None  # None without a value model (grpo)
    clip_fraction: float
    value_clip_fraction: float | None
    approx_kl: float  # KL(old || new) during the update (k3)
    kl_to_sft: float  # KL(policy || SFT reference) before the update, learner.ppo.kl_estimator
    kl_penalty: float  # kl_coef * kl_to_sft: the ppo reward penalty (grpo: loss term); 0 for repo
    entropy: float
    grad_norm: float  # policy, pre-clip, mean over this step's optimizer steps
    value_grad_norm: float | None
    lr: float
    logprob_mismatch: float  # mean |learner old logprob - rollout logprob|: staleness / numerics
    is_weight_mean: float  # behaviour importance weight exp(old - rollout logprob) before the cap: mean,
    is_weight_min: float  # min and max over the tokens (1.0 when no token trained)
    is_weight_max: float
    is_capped_fraction: float  # share of tokens whose weight learner.ppo.is_cap changed
    mean_advantage: float
    mean_reward: float  # mean scalar reward of the trained samples (the mode's reward field)
    samples: int  # trained samples
    masked: int  # samples excluded from the loss (RewardResult.masked)
    tokens: int  # trainable response tokens
    optimizer_steps: int
    step_time_s: float

    def as_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


REWARD_KL_ESTIMATOR = "k1"  # log pi - log ref: the standard in-reward penalty (InstructGPT, verl's "kl")


def shaped_rewards(scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Token rewards [B, T]: each sample's scalar reward on its last response token, minus
    kl_coef * KL(policy || reference) on every response token (ppo; repo passes 0)."""
    rewards = terminal_rewards(scores, mask)
    return rewards - kl_coef * kl * mask if kl_coef else rewards


@dataclass
class PreparedMicroBatch:
    """One micro-batch after the pre-update pass: what every update epoch reads.
    Token tensors are [b, R] (no grad); `rows` index the global batch."""

    mb: TokenBatch
    rows: torch.Tensor
    old_lp: torch.Tensor  # current policy before the update: the ratio's (proximal) denominator
    ref_lp: torch.Tensor  # the SFT reference (adapter disabled)
    is_weights: ImportanceWeights  # behaviour (rollout) -> proximal correction per token
    token_rewards: torch.Tensor
    old_values: torch.Tensor | None = None
    adv: torch.Tensor | None = None
    returns: torch.Tensor | None = None

    @property
    def mask(self) -> torch.Tensor:
        return self.mb.loss_mask


def pre_update_pass(policy: Engine, value: Engine | None, mb: TokenBatch, rows: Sequence[int], s: RLSettings,
                    stats: RLStepStats) -> PreparedMicroBatch:
    """No-grad old logprobs (current policy), reference logprobs and values of one
    micro-batch, and the importance weights from the rollout's (behaviour) logprobs to
    the old ones: stale samples were drawn by an older adapter (see
    `algos.behaviour_importance_weights`)."""
    mask = mb.loss_mask
    old_lp = policy_logprobs(policy.module, mb, s.temperature)
    ref_lp = policy_logprobs(policy.module, mb, s.temperature, reference=True)
    w = behaviour_importance_weights(old_lp, mb.rollout_logprobs, mask, s.off_policy_correction, s.is_cap)
    valid = mask.bool()
    stats.kl_to_sft += float(masked_sum(kl_estimate(old_lp, ref_lp, s.kl_estimator), mask))
    stats.logprob_mismatch += float(masked_sum((old_lp - mb.rollout_logprobs).abs(), mask))
    stats.is_weight += float(masked_sum(w.raw, mask))
    stats.is_capped += int(w.capped.sum())
    if valid.any():
        stats.is_weight_min = min(stats.is_weight_min, float(w.raw[valid].min()))
        stats.is_weight_max = max(stats.is_weight_max, float(w.raw[valid].max()))
    stats.samples += mb.size
    stats.tokens += int(mask.sum())
    stats.reward_sum += float(mb.scores.sum())
    kl_in_reward = kl_estimate(old_lp, ref_lp, REWARD_KL_ESTIMATOR) if s.kl_coef else torch.zeros_like(old_lp)
    return PreparedMicroBatch(
        mb, torch.as_tensor(list(rows), dtype=torch.long), old_lp, ref_lp, w,
        token_rewards=shaped_rewards(mb.scores, mask, kl_in_reward, s.kl_coef),
        old_values=value_predictions(value.module, mb) if value is not None else None,
    )


def compute_advantages(prepared: Sequence[PreparedMicroBatch], batch: TokenBatch, s: RLSettings,
                       all_reduce: AllReduce, device: torch.device, stats: RLStepStats) -> None:
    """Fill each micro-batch's advantages (and value targets) by the configured estimator;
    critic advantages are whitened over the global batch (every rank calls the reduce)."""
    for p in prepared:
        x = AdvantageInputs(p.token_rewards, p.mask, p.old_values, p.rows, batch.scores, batch.group_ids,
                            s.gamma, s.lam, s.grpo_std_normalize)
        p.adv, p.returns = estimate_advantages(s.advantage_estimator, x)
    if s.uses_value_model and s.whiten_advantages:
        whitened = masked_whiten_across_ranks([p.adv for p in prepared], [p.mask for p in prepared], all_reduce,
                                              device)
        for p, a in zip(prepared, whitened, strict=True):
            p.adv = a
    stats.advantage += sum(float(masked_sum(p.adv, p.mask)) for p in prepared)


def update_epoch(policy: Engine, value: Engine | None, prepared: Sequence[PreparedMicroBatch | None],
                 s: RLSettings, n_global: int, world_size: int, stats: RLStepStats) -> None:
    """One pass over the rank's micro-batches: one optimizer step of policy (and value).
    An empty micro-batch still runs backward and step, so the ranks' collectives line up."""
    gas, loss_fn = policy.gradient_accumulation_steps, get_policy_loss(s.policy_loss)
    for p in prepared:
        if p is None:
            policy.backward(_zero_loss(policy.module))
            _record(stats.grad_norms, policy.step())
            if value is not None:
                value.backward(_zero_loss(value.module))
                _record(stats.value_grad_norms, value.step())
            continue
        mask, n = p.mask, float(p.mask.sum())
        scale = n * gas * world_size / n_global  # see the module docstring
        lp, ent = _forward_logprobs(policy, p.mb, s.temperature, "grad" if s.entropy_coef else "metric")
        weights = p.is_weights.weights if s.off_policy_correction != "none" else None
        pl = loss_fn(lp, p.old_lp, p.adv, mask, s.clip_eps, weights=weights)
        entropy = masked_mean(ent, mask)
        loss = pl.loss - s.entropy_coef * entropy
        if s.algorithm == "grpo" and s.kl_coef:
            loss = loss + s.kl_coef * masked_mean(kl_estimate(lp, p.ref_lp, s.kl_estimator), mask)
        policy.backward(loss * scale)
        _record(stats.grad_norms, policy.step())
        stats.policy_loss += float(pl.loss.detach()) * n
        stats.clip_fraction += float(pl.clip_fraction.detach()) * n
        stats.approx_kl += float(pl.approx_kl.detach()) * n
        stats.entropy += float(entropy.detach()) * n
        stats.update_tokens += int(n)
        if value is not None:
            vl = value_loss(window_values(value, p.mb), p.old_values, p.returns, mask, s.value_clip_eps)
            value.backward(s.vf_coef * vl.loss * scale)
            _record(stats.value_grad_norms, value.step())
            stats.value_loss += float(vl.loss.detach()) * n
            stats.value_clip_fraction += float(vl.clip_fraction.detach()) * n


def rl_step(
    policy: Engine,
    value: Engine | None,
    batch: TokenBatch,
    s: RLSettings,
    rank: int = 0,
    world_size: int = 1,
    all_reduce: AllReduce = _no_reduce,
) -> RLStepStats:
    """One PPO-family update on this rank's share of `batch` (the whole global batch).

    1. `pre_update_pass`: no-grad old logprobs (current policy: the proximal policy),
       reference logprobs (adapter disabled), values, and the behaviour importance weights
       from the rollout's logprobs; token rewards put the scalar reward on the last
       response token (ppo also subtracts kl_coef * k1 KL to the reference on every token).
    2. `compute_advantages`: the estimator named by the settings (repo/ppo: GAE with the
       values, whitened over the global batch; grpo: rewards standardised within each
       `group_id` over the whole batch).
    3. `ppo_epochs` x `update_epoch`, each one optimizer step over the rank's micro-batches;
       the clipped ratio is taken against the old logprobs and each token's loss is
       multiplied by its importance weight (learner.ppo.off_policy_correction).
    """
    if s.uses_value_model and value is None:
        raise ValueError(f"{s.algorithm} needs a value model")
    value = value if s.uses_value_model else None
    stats = RLStepStats(lr=float(policy.get_lr()[0]))  # the lr this step's update runs at
    if batch.num_tokens == 0:
        return stats
    device = _device(policy.module)
    chunks = micro_batches(shard_rows(batch.size, rank, world_size), policy.gradient_accumulation_steps,
                           _row_lengths(batch))
    prepared = [pre_update_pass(policy, value, batch.select(rows).to(device), rows, s, stats) if rows else None
                for rows in chunks]
    compute_advantages([p for p in prepared if p is not None], batch, s, all_reduce, device, stats)
    for _ in range(s.ppo_epochs):
        update_epoch(policy, value, prepared, s, batch.num_tokens, world_size, stats)
    return stats


def _record(norms: list[float], norm: float | None) -> None:
    if norm is not None:
        norms.append(float(norm))


def summarize_rl(algorithm: str, ranks: Sequence[RLStepStats], masked: int, step_time_s: float,
                 kl_coef: float = 0.0) -> StepMetrics:
    """Combine the ranks' sums into one StepMetrics (token-weighted means)."""
    tokens = sum(r.tokens for r in ranks)
    upd = max(1, sum(r.update_tokens for r in ranks))
    samples = sum(r.samples for r in ranks)

    def per_token(name: str, denom: int) -> float:
        return sum(getattr(r, name) for r in ranks) / max(1, denom)

    has_value = any(r.value_grad_norms for r in ranks)
    grad = ranks[0].grad_norms  # global norms: identical on every rank
    vgrad = ranks[0].value_grad_norms
    kl_to_sft = per_token("kl_to_sft", tokens)
    return StepMetrics(
        algorithm=algorithm,
        policy_loss=per_token("policy_loss", upd),
        value_loss=per_token("value_loss", upd) if has_value else None,
        clip_fraction=per_token("clip_fraction", upd),
        value_clip_fraction=per_token("value_clip_fraction", upd) if has_value else None,
        approx_kl=per_token("approx_kl", upd),
        kl_to_sft=kl_to_sft,
        kl_penalty=kl_coef * kl_to_sft,
        entropy=per_token("entropy", upd),
        grad_norm=sum(grad) / len(grad) if grad else 0.0,
        value_grad_norm=(sum(vgrad) / len(vgrad) if vgrad else 0.0) if has_value else None,
        lr=ranks[0].lr,
        logprob_mismatch=per_token("logprob_mismatch", tokens),
        is_weight_mean=per_token("is_weight", tokens) if tokens else 1.0,
        is_weight_min=min(r.is_weight_min for r in ranks) if tokens else 1.0,
        is_weight_max=max(r.is_weight_max for r in ranks) if tokens else 1.0,
        is_capped_fraction=per_token("is_capped", tokens),
        mean_advantage=per_token("advantage", tokens),
        mean_reward=sum(r.reward_sum for r in ranks) / max(1, samples),
        samples=samples,
        masked=masked,
        tokens=tokens,
        optimizer_steps=len(grad),
        step_time_s=step_time_s,
    )


# --------------------------------------------------------------------------- SFT
@dataclass
class SupervisedStats:
    """One rank's sums over one SFT or DPO step."""

    rows: int = 0  # dialogues (SFT) or pairs (DPO)
    tokens: int = 0
    loss: float = 0.0  # SFT: token sum of NLL; DPO: pair sum of the loss
    margin: float = 0.0  # DPO: pair sum of chosen_reward - rejected_reward
    accuracy: float = 0.0  # DPO: pairs with chosen_reward > rejected_reward
    grad_norms: list[float] = field(default_factory=list)
    lr: float = 0.0


@dataclass(frozen=True)
class SupervisedMetrics:
    """Per-step SFT / DPO metrics. SFT: loss = mean NLL per agent-turn token. DPO: loss =
    mean DPO loss per pair, margin = mean beta * (chosen - rejected) log-ratio vs reference."""

    mode: str
    loss: float
    margin: float | None
    accuracy: float | None
    grad_norm: float
    lr: float
    rows: int
    tokens: int
    step_time_s: float

    def as_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def sft_step(policy: Engine, batch: TokenBatch, rank: int = 0, world_size: int = 1) -> SupervisedStats:
    """Next-token NLL on the agent-turn tokens (batch.loss_mask) of this rank's dialogues."""
    stats = SupervisedStats(lr=float(policy.get_lr()[0]))
    n_global = batch.num_tokens
    gas = policy.gradient_accumulation_steps
    for rows in micro_batches(shard_rows(batch.size, rank, world_size), gas, _row_lengths(batch)):
        if not rows or n_global == 0:
            policy.backward(_zero_loss(policy.module))
            _record(stats.grad_norms, policy.step())
            continue
        mb = batch.select(rows).to(_device(policy.module))
        lp, _ = _forward_logprobs(policy, mb, 1.0)
        n = float(mb.loss_mask.sum())
        nll = -masked_sum(lp, mb.loss_mask)
        policy.backward(nll * gas * world_size / n_global)
        _record(stats.grad_norms, policy.step())
        stats.loss += float(nll.detach())
        stats.tokens += int(n)
        stats.rows += mb.size
    return stats


@torch.no_grad()
def sft_loss(module: nn.Module, batch: TokenBatch) -> float:
    """Mean NLL per trainable token (evaluation; no update)."""
    batch = batch.to(_device(module))
    lp = policy_logprobs(module, batch)
    return float(-masked_sum(lp, batch.loss_mask) / batch.loss_mask.sum().clamp(min=1))


# --------------------------------------------------------------------------- DPO
def _pair_rows(rows: Sequence[int], n_pairs: int) -> list[int]:
    return list(rows) + [r + n_pairs for r in rows]


def _sequence_logps(model: Callable, mb: TokenBatch) -> torch.Tensor:
    return _forward_logprobs(model, mb, 1.0)[0].sum(-1)


def dpo_step(policy: Engine, batch: TokenBatch, beta: float, rank: int = 0, world_size: int = 1) -> SupervisedStats:
    """DPO on this rank's pairs; `batch` is `collate_preferences` output (chosen rows, then
    rejected rows). The reference is the policy with its adapter disabled."""
    stats = SupervisedStats(lr=float(policy.get_lr()[0]))
    n_pairs = batch.size // 2
    gas = policy.gradient_accumulation_steps
    lengths = _row_lengths(batch)
    pair_lengths = [max(lengths[i], lengths[i + n_pairs]) for i in range(n_pairs)]
    for rows in micro_batches(shard_rows(n_pairs, rank, world_size), gas, pair_lengths):
        if not rows:
            policy.backward(_zero_loss(policy.module))
            _record(stats.grad_norms, policy.step())
            continue
        mb = batch.select(_pair_rows(rows, n_pairs)).to(_device(policy.module))
        m = len(rows)
        ref = policy_logprobs(policy.module, mb, reference=True).sum(-1)
        logps = _sequence_logps(policy, mb)
        out = dpo_loss(logps[:m], logps[m:], ref[:m], ref[m:], beta)
        policy.backward(out.loss * m * gas * world_size / n_pairs)
        _record(stats.grad_norms, policy.step())
        stats.loss += float(out.loss.detach()) * m
        stats.margin += float((out.chosen_rewards - out.rejected_rewards).sum())
        stats.accuracy += float(out.accuracy) * m
        stats.rows += m
        stats.tokens += int(mb.loss_mask.sum())
    return stats


@torch.no_grad()
def dpo_margin(module: nn.Module, batch: TokenBatch, beta: float) -> float:
    """Mean beta * ((policy - ref) chosen - (policy - ref) rejected) log-ratio (evaluation)."""
    n = batch.size // 2
    batch = batch.to(_device(module))
    lp = policy_logprobs(module, batch).sum(-1)
    ref = policy_logprobs(module, batch, reference=True).sum(-1)
    out = dpo_loss(lp[:n], lp[n:], ref[:n], ref[n:], beta)
    return float((out.chosen_rewards - out.rejected_rewards).mean())


def summarize_supervised(mode: str, ranks: Sequence[SupervisedStats], step_time_s: float) -> SupervisedMetrics:
    rows = sum(r.rows for r in ranks)
    tokens = sum(r.tokens for r in ranks)
    grad = ranks[0].grad_norms
    if mode == "sft":
        loss = sum(r.loss for r in ranks) / max(1, tokens)
        margin = accuracy = None
    else:
        loss = sum(r.loss for r in ranks) / max(1, rows)
        margin = sum(r.margin for r in ranks) / max(1, rows)
        accuracy = sum(r.accuracy for r in ranks) / max(1, rows)
    return SupervisedMetrics(mode, loss, margin, accuracy, sum(grad) / len(grad) if grad else 0.0,
                             ranks[0].lr, rows, tokens, step_time_s)


# --------------------------------------------------------------------------- epochs
def epoch_batches(n: int, batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """Index lists of every step of `epochs` passes over n items, shuffled per epoch with a
    seeded RNG (identical on every rank); the last batch of an epoch may be short."""
    out = []
    for epoch in range(epochs):
        order = list(range(n))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        out += [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return out
