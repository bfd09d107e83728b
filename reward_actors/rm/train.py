"""Bradley-Terry reward-model training on the preference pairs, top to bottom.

Split the pairs by scenario, fine-tune a one-label sequence classifier (every weight, or
LoRA plus the score head) with plain torch AdamW, merge, score the train and held-out
pairs, and write the RM directory: safetensors weights, tokenizer and `rm_stats.json`
(z-score reference statistics + accuracy report). No DeepSpeed: one process holds the
whole RM, which is small next to the policy.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import TaskType

from repo_ray.algos import bradley_terry_loss
from repo_ray.algos.reward_enhance import RMNormalizer
from repo_ray.config import RepoRayConfig
from repo_ray.domain.schemas import PreferencePair
from repo_ray.errors import DataFileError, ModelLoadError
from repo_ray.model.chat import padding_id
from repo_ray.model.context import ContextTally
from repo_ray.model.export import _replace_dir, add_lora
from repo_ray.model.loading import checkpointed, load_reward_model, load_tokenizer
from reward_actors.rm.data import EncodedPair, encode_pairs, split_by_scenario
from reward_actors.rm.scorer import pad_right, score_batch, sequence_scores
from reward_actors.rm.stats import AccuracyReport, RMStats, accuracy_report, save_rm_stats

log = logging.getLogger(__name__)

# The z-score reference: the chosen and rejected replies of the training split. Their mean
# is the midpoint between good and defective replies in context, so z > 0 reads "better
# than a typical reply"; it is the larger set (steadier statistics than the held-out one).
REFERENCE_SET = "train_split_chosen_and_rejected"


@dataclass(frozen=True)
class RMTrainResult:
    out_dir: Path
    stats: RMStats
    train: AccuracyReport
    held_out: AccuracyReport | None  # None when reward.model.holdout_fraction is 0
    train_pairs: int
    held_out_pairs: int
    train_scenarios: int
    held_out_scenarios: int
    steps: int
    final_loss: float  # mean BT loss over the last epoch
    finetune: str  # "full" or "lora"
    device: str
    train_s: float  # optimisation only
    total_s: float  # tokenising, training, merging, scoring and saving


def _load_trainable(cfg: RepoRayConfig, base: str | os.PathLike, tokenizer, device: str):
    rm = cfg.reward.model
    # From a causal-LM checkpoint the score head is freshly initialised: seed it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = load_reward_model(
            base, dtype=cfg.model.dtype, device=device, trust_remote_code=cfg.model.trust_remote_code,
            pad_token_id=padding_id(tokenizer),  # never the end-of-turn id the score is read after
        )
        model = checkpointed(model, rm.gradient_checkpointing)
        if rm.finetune == "lora":
            model = add_lora(model, cfg.learner.lora, TaskType.SEQ_CLS)  # peft adds `score` to modules_to_save
            if not any(p.requires_grad for n, p in model.named_parameters() if ".score." in f".{n}"):
                raise RuntimeError(f"LoRA on {type(model.base_model.model).__name__}: the score head is frozen")
    return model.train()


# Batches are drawn from windows of this many batches sorted by length: rows of like length
# pad little (RM inputs carry the whole system prompt and range ~150-1000 tokens), while the
# shuffle before windowing and of the batch order keeps epochs random.
_BUCKET_WINDOW = 8


def _batches(lengths: Sequence[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    rng = random.Random(f"{seed}:rm:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * _BUCKET_WINDOW
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w : w + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _fit(model, pairs: Sequence[EncodedPair], cfg: RepoRayConfig, pad_id: int, device: str) -> tuple[int, float]:
    """Bradley-Terry epochs over `pairs`; returns (optimizer steps, mean loss of the last epoch)."""
    rm, opt_cfg = cfg.reward.model, cfg.learner.optimizer
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=rm.lr, betas=opt_cfg.betas, eps=opt_cfg.eps, weight_decay=opt_cfg.weight_decay
    )
    warmup = opt_cfg.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / (warmup + 1)))
    steps, last_loss = 0, math.nan
    lengths = [max(len(p.chosen_ids), len(p.rejected_ids)) for p in pairs]
    for epoch in range(rm.epochs):
        started, loss_sum, acc_sum = time.perf_counter(), 0.0, 0.0
        for batch in _batches(lengths, rm.batch_size, cfg.seed, epoch):
            rows = [pairs[i] for i in batch]
            ids, mask = pad_right([p.chosen_ids for p in rows] + [p.rejected_ids for p in rows], pad_id, device)
            scores = sequence_scores(model, ids, mask)  # one forward for both sides
            out = bradley_terry_loss(scores[: len(rows)], scores[len(rows) :])
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, opt_cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            steps += 1
            loss_sum += out.loss.item() * len(rows)
            acc_sum += out.accuracy.item() * len(rows)
        last_loss = loss_sum / len(pairs)
        log.info("rm epoch %d/%d: loss %.4f, train accuracy %.3f, %.1fs", epoch + 1, rm.epochs, last_loss,
                 acc_sum / len(pairs), time.perf_counter() - started)
    return steps, last_loss


def _pair_scores(model, tokenizer, pairs: Sequence[EncodedPair], batch_size: int) -> tuple[list[float], list[float]]:
    scores = score_batch(model, tokenizer, [p.chosen_ids for p in pairs] + [p.rejected_ids for p in pairs], batch_size)
    return scores[: len(pairs)], scores[len(pairs) :]


def _save(model, tokenizer, stats: RMStats, out_dir: str | os.PathLike) -> Path:
    """Weights (safetensors), tokenizer and stats, renamed into place only when complete."""
    out = Path(out_dir).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        save_rm_stats(stats, tmp)
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def train_reward_model(
    cfg: RepoRayConfig,
    pairs: Sequence[PreferencePair],
    base: str | os.PathLike,
    out_dir: str | os.PathLike,
    tokenizer_path: str | os.PathLike | None = None,
    device: str | None = None,
) -> RMTrainResult:
    """Train an RM from `base` (a reward-model dir, a causal LM such as RUN/sft/model, or a
    hub id) on `pairs` with `cfg.reward.model`; write it to `out_dir`.

    LoRA settings (finetune: lora) are `learner.lora`'s; AdamW betas, eps, weight decay,
    warmup and grad clip are `learner.optimizer`'s; lr, epochs, batch size and lengths are
    `reward.model`'s. The tokenizer is `tokenizer_path`, else the one in `base`.
    """
    started = time.perf_counter()
    rm = cfg.reward.model
    if not pairs:
        raise DataFileError("no preference pairs to train the reward model on")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    split = split_by_scenario(pairs, rm.holdout_fraction, cfg.seed)
    tokenizer = load_tokenizer(tokenizer_path or base, trust_remote_code=cfg.model.trust_remote_code)
    try:
        pad_id = padding_id(tokenizer)
    except ValueError as err:
        raise ModelLoadError(f"{tokenizer_path or base}: {err}; the RM needs a pad id to batch") from None
    tally = ContextTally(_what="RM inputs")  # what reward.model.max_tokens left out, said in the log and stats
    train = encode_pairs(tokenizer, split.train, rm.max_tokens, tally)
    held = encode_pairs(tokenizer, split.held_out, rm.max_tokens, tally)
    log.info("rm context: %s", tally.line(rm.max_tokens))

    model = _load_trainable(cfg, base, tokenizer, device)
    fit_started = time.perf_counter()
    steps, final_loss = _fit(model, train, cfg, pad_id, device)
    train_s = time.perf_counter() - fit_started
    if rm.finetune == "lora":
        model = model.merge_and_unload()  # a plain classifier: what the scorer and stats see
    model.eval()

    eval_batch = 2 * rm.batch_size
    train_c, train_r = _pair_scores(model, tokenizer, train, eval_batch)
    train_report = accuracy_report(train, train_c, train_r)
    held_report = accuracy_report(held, *_pair_scores(model, tokenizer, held, eval_batch)) if held else None
    normalizer = RMNormalizer.fit(train_c + train_r)
    stats = RMStats(
        mean=normalizer.mean,
        std=normalizer.std,
        reference=REFERENCE_SET,
        reference_size=2 * len(train),
        max_tokens=rm.max_tokens,
        train=train_report,
        held_out=held_report,
        info={
            "base": str(base),
            "finetune": rm.finetune,
            "lora": cfg.learner.lora.model_dump(mode="json") if rm.finetune == "lora" else None,
            "epochs": rm.epochs, "lr": rm.lr, "batch_size": rm.batch_size, "steps": steps,
            "final_loss": final_loss, "seed": cfg.seed, "holdout_fraction": rm.holdout_fraction,
            "train_pairs": len(train), "held_out_pairs": len(held),
            "device": device, "train_s": round(train_s, 2),
            "context": {"pairs": len(train) + len(held), "max_tokens": rm.max_tokens,
                        "pairs_with_dropped_turns": sum(p.dropped_turns > 0 for p in train + held),
                        "dropped_turns": sum(p.dropped_turns for p in train + held),
                        "pairs_with_reply_cut": sum(p.response_cut > 0 for p in train + held)},
        },
    )
    out = _save(model, tokenizer, stats, out_dir)
    return RMTrainResult(
        out_dir=out,
        stats=stats,
        train=train_report,
        held_out=held_report,
        train_pairs=len(train),
        held_out_pairs=len(held),
        train_scenarios=len({p.scenario_id for p in train}),
        held_out_scenarios=len({p.scenario_id for p in held}),
        steps=steps,
        final_loss=final_loss,
        finetune=rm.finetune,
        device=device,
        train_s=train_s,
        total_s=time.perf_counter() - started,
    )
