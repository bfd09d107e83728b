"""Scoring with the trained reward model: batched pure scoring, and the thin RMScorer actor.

`score_batch` turns token-id sequences into one scalar each; `RewardModelScorer` loads a
trained RM directory (weights + `rm_stats.json`) and scores Trajectories exactly as the
pairs were encoded in training, z-scored when `reward.rm_normalization` is zscore.
`RMScorer` is that scorer in a Ray actor, on a GPU when its options give it one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import ray
import torch

from repo_ray.algos.reward_enhance import RMNormalizer
from repo_ray.heap import HeapTrimmer
from repo_ray.model.chat import padding_id
from repo_ray.model.loading import Dtype, load_reward_model, load_tokenizer
from repo_ray.types import Trajectory
from reward_actors.rm.data import trajectory_input_ids
from reward_actors.rm.stats import RMStats, load_rm_stats


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"):
    """(input_ids [B, T], attention_mask [B, T]) with each row padded on the right.

    Right padding leaves every real token at its unpadded position, so a row scores the
    same alone or in any batch (left padding would shift its position ids).
    """
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.as_tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def _pad_id(model, tokenizer) -> int:
    """The pad id, checked against the model's: HF sequence classifiers read each row's
    score at its last token that is not `config.pad_token_id`, so padding with any other id
    would silently score a pad position."""
    model_pad = model.config.get_text_config().pad_token_id
    if model_pad is None:
        raise ValueError(
            f"{type(model).__name__} has no pad_token_id; load it with pad_token_id=padding_id(tokenizer)"
        )
    if padding_id(tokenizer) != model_pad:
        raise ValueError(f"tokenizer padding id {padding_id(tokenizer)} != reward model pad id {model_pad}")
    return int(model_pad)


def sequence_scores(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B] float32 scores of right-padded rows (the classifier's logit at each last real token)."""
    return model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, 0].float()


def score_batch(model, tokenizer, items: Sequence[Sequence[int]], batch_size: int) -> list[float]:
    """Raw RM scores of token-id sequences, in input order.

    Rows are scored longest-first in chunks of `batch_size` so each chunk pads little;
    the model is put in eval mode and run without gradients.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for i, seq in enumerate(items):
        if len(seq) == 0:
            raise ValueError(f"item {i}: empty token sequence")
    pad = _pad_id(model, tokenizer)
    device = next(model.parameters()).device
    order = sorted(range(len(items)), key=lambda i: -len(items[i]))
    out = [0.0] * len(items)
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, mask = pad_right([items[i] for i in chunk], pad, device)
            for i, s in zip(chunk, sequence_scores(model, ids, mask).tolist(), strict=True):
                out[i] = float(s)
    return out


class RewardModelScorer:
    """A trained RM directory loaded for scoring (plain Python; `RMScorer` wraps it in Ray)."""

    def __init__(
        self,
        rm_dir: str | os.PathLike,
        normalization: str = "zscore",
        batch_size: int = 32,
        device: str = "cpu",
        dtype: Dtype = "float32",
    ):
        if normalization not in ("zscore", "none"):
            raise ValueError(f"normalization must be 'zscore' or 'none', got {normalization!r}")
        self.rm_dir = Path(rm_dir)
        self.stats: RMStats = load_rm_stats(self.rm_dir)
        self.tokenizer = load_tokenizer(self.rm_dir)
        self.model = load_reward_model(
            self.rm_dir, dtype=dtype, device=device, pad_token_id=padding_id(self.tokenizer)
        )
        self.normalizer = self.stats.normalizer() if normalization == "zscore" else RMNormalizer.identity()
        self.batch_size = batch_size
        self.device = device

    def input_ids(self, trajectories: Sequence[Trajectory]) -> list[list[int]]:
        """The RM inputs of these trajectories (same encoding and max_tokens as training)."""
        if isinstance(trajectories, Trajectory) or not isinstance(trajectories, Sequence):
            raise TypeError(f"expected a list of Trajectory, got {type(trajectories).__name__}")
        for i, t in enumerate(trajectories):
            if not isinstance(t, Trajectory):
                raise TypeError(f"item {i}: expected a Trajectory, got {type(t).__name__}")
            if not t.messages:
                raise ValueError(f"trajectory {t.sample_id}: no context messages to score the reply in")
        return [trajectory_input_ids(self.tokenizer, t, self.stats.max_tokens) for t in trajectories]

    def score(self, trajectories: Sequence[Trajectory], normalize: bool = True) -> list[float]:
        """One R_model per trajectory, in order: z-scored (per the normalization) or raw."""
        raw = score_batch(self.model, self.tokenizer, self.input_ids(trajectories), self.batch_size)
        return [self.normalizer(s) for s in raw] if normalize else raw


class RMScorer:
    """The reward model as a Ray actor (made remote in repo_ray/pipeline/placement.py). GPUs
    come from its actor options: with a GPU assigned it scores on cuda, otherwise on CPU."""

    def __init__(self, rm_dir: str, normalization: str = "zscore", batch_size: int = 32, dtype: Dtype = "float32"):
        device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        # CPU scoring stays float32: half precision on CPU is slow and shifts scores off the stats.
        self._scorer = RewardModelScorer(
            rm_dir, normalization, batch_size, device, dtype if device == "cuda" else "float32"
        )
        self._trim = HeapTrimmer()  # RSS stays at the live set, not the largest batch's peak

    def score(self, trajectories: list[Trajectory]) -> list[float]:
        """R_model of each trajectory, in order (see `RewardModelScorer.score`)."""
        try:
            return self._scorer.score(trajectories)
        finally:
            self._trim()

    def info(self) -> dict:
        s = self._scorer
        return {"device": s.device, "rm_dir": str(s.rm_dir), "mean": s.stats.mean, "std": s.stats.std,
                "normalizer": [s.normalizer.mean, s.normalizer.std], "max_tokens": s.stats.max_tokens}

