"""Reductions over the valid (mask == 1) tokens of a padded batch.

Masks are 0/1 (bool or numeric). Values at mask == 0 never reach a result, even when
they are NaN or inf. An empty mask gives 0, not NaN: a batch whose samples were all
masked contributes nothing instead of poisoning the update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of x over mask == 1. x, mask: same shape, e.g. [B, T]. Returns a scalar, or x reduced over `dim`."""
    valid = torch.where(mask.bool(), x, torch.zeros_like(x))
    return valid.sum() if dim is None else valid.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over mask == 1; 0 where the mask is empty (all zero).

    x, mask: same shape, e.g. [B, T]. Returns a scalar, or x reduced over `dim` (e.g. [B] for dim=-1).
    """
    count = mask.bool().sum() if dim is None else mask.bool().sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1).to(x.dtype)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of x over all mask == 1 elements; a scalar.

    unbiased=True divides by (count - 1). Returns 0 when there are too few elements to
    estimate it (none, or a single one with unbiased=True).
    """
    count = mask.bool().sum()
    centered = x - masked_mean(x, mask)
    sq_sum = masked_sum(centered * centered, mask)
    dof = count - 1 if unbiased else count
    if dof < 1:
        return torch.zeros((), dtype=x.dtype, device=x.device)
    return sq_sum / dof.to(x.dtype)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the mask == 1 elements, 0 where mask == 0; same shape as x.

    Uses the unbiased variance. shift_mean=False adds the mean back (only rescales).
    """
    mean = masked_mean(x, mask)
    whitened = (x - mean) * torch.rsqrt(masked_var(x, mask) + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, torch.zeros_like(whitened))


def masked_whiten_across_ranks(
    xs: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    all_reduce: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device | str = "cpu",
    eps: float = 1e-8,
) -> list[torch.Tensor]:
    """`masked_whiten` over the union of every rank's tensors (unbiased variance).

    xs, masks: this rank's [b_i, T_i] tensors (any number, possibly none). `all_reduce`
    sums a tensor in place over the ranks (identity in one process). Every rank must call
    it, even with no tensors of its own, so the collective always lines up. The sums are
    float64 and live on `device` (nccl reduces GPU tensors only). With fewer than two
    valid elements in all, the inputs come back unchanged.
    """
    stats = torch.zeros(3, dtype=torch.float64, device=device)
    for x, m in zip(xs, masks, strict=True):
        stats += torch.stack([masked_sum(x, m).double(), masked_sum(x * x, m).double(), m.sum().double()])
    all_reduce(stats)
    total, sq, count = stats.tolist()
    if count < 2:
        return list(xs)
    mean = total / count
    var = (sq - count * mean * mean) / (count - 1)
    scale = 1.0 / math.sqrt(max(var, 0.0) + eps)
    return [torch.where(m.bool(), (x - mean) * scale, torch.zeros_like(x)) for x, m in zip(xs, masks, strict=True)]
