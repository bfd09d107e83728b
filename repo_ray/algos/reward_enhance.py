"""REPO's reward enhancement (DESIGN.md §1): judge and rule scores scale the RM score.

Also the z-scoring of raw RM scores against a reference set, so that the sign of
R_model means "better / worse than typical" before it is enhanced.

Floats or tensors: torch is imported only where a tensor is made (`RMNormalizer.fit`), so the
reward side's light actors (the pool, which combines the sources) load no torch.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    Score = float | torch.Tensor  # annotations only (they are never evaluated at run time)


def _is_tensor(x: object) -> bool:
    """True for a torch tensor; without torch imported nothing is one."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _check_n(n: float) -> None:
    if not (math.isfinite(n) and n > 0):
        raise ValueError(f"enhancement scale n must be a finite number > 0, got {n!r}")


def enhancement(e_judge: Score, e_func: Score, n: float = 100.0) -> Score:
    """E_enh = clip(E_judge + E_func, -n, n): only the sum is clipped, never each source.

    Args:
        e_judge: judge score E_judge, a float or a tensor of any shape.
        e_func: rule score E_func, a float or a tensor broadcastable with `e_judge`.
        n: enhancement scale (> 0).

    Returns:
        A float when both inputs are numbers, else a tensor of the broadcast shape.
    """
    _check_n(n)
    total = e_judge + e_func
    if _is_tensor(total):
        return total.clamp(-n, n)
    return float(min(max(total, -n), n))


def enhance_reward(r_model: Score, e_judge: Score, e_func: Score, n: float = 100.0) -> Score:
    """R_total = R_model + |R_model| * clip(E_judge + E_func, -n, n) / n.

    Equivalently R_model * (1 ± E_enh / n) with ± the sign of R_model, a factor in [0, 2]:
    - the sign of R_model never flips (at E_enh = ∓n the total reaches 0, no further);
    - R_model = 0 gives 0 whatever the judge and rules say;
    - for a positive R_model, positive E raises the reward (up to 2 * R_model);
    - for a negative R_model, positive E reduces the penalty (up to 0) and negative E
      amplifies it (down to 2 * R_model).

    Args:
        r_model: RM score (z-scored, see `RMNormalizer`), a float or tensor, e.g. [B].
        e_judge: judge score E_judge, float or tensor broadcastable with `r_model`.
        e_func: rule score E_func, float or tensor broadcastable with `r_model`.
        n: enhancement scale (> 0; paper: 100).

    Returns:
        A float when every input is a number, else a tensor of the broadcast shape.
    """
    e_enh = enhancement(e_judge, e_func, n)
    total = r_model + abs(r_model) * e_enh / n
    return total if _is_tensor(total) else float(total)


@dataclass(frozen=True, slots=True)
class RMNormalizer:
    """Z-scores raw RM scores: (score - mean) / std, with mean and std from a reference set."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"RMNormalizer needs a finite mean and a finite std > 0, got {self.mean!r}, {self.std!r}")

    @classmethod
    def fit(cls, reference_scores: Sequence[float] | torch.Tensor, eps: float = 1e-6) -> RMNormalizer:
        """Mean and sample std (Bessel-corrected, n - 1) of the reference scores.

        Args:
            reference_scores: raw RM scores of a reference set, any shape (flattened), >= 2 of them.
            eps: floor of the std, so a constant reference set does not divide by zero.
        """
        import torch

        x = torch.as_tensor(reference_scores, dtype=torch.float64).flatten()
        if x.numel() < 2:
            raise ValueError(f"RMNormalizer.fit needs at least 2 reference scores, got {x.numel()}")
        if not torch.isfinite(x).all():
            raise ValueError("RMNormalizer.fit: reference scores contain NaN or inf")
        return cls(mean=float(x.mean()), std=max(float(x.std(unbiased=True)), eps))

    @classmethod
    def identity(cls) -> RMNormalizer:
        """The normalizer of `reward.rm_normalization: none` (mean 0, std 1)."""
        return cls(0.0, 1.0)

    def __call__(self, scores: Score) -> Score:
        """Z-scored scores: a float for a float, a tensor of the same shape for a tensor."""
        z = (scores - self.mean) / self.std
        return z if _is_tensor(z) else float(z)
