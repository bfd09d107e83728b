"""Masked reductions, pinned to hand-computed numbers (CPU only)."""

import math

import pytest
import torch

from repo_ray.algos import masked_mean, masked_sum, masked_var, masked_whiten, masked_whiten_across_ranks

X = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 6.0, -50.0, 7.0]])
MASK = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])


def test_masked_sum_ignores_padding_even_when_it_is_nan():
    x = X.clone()
    x[0, 3] = math.nan
    x[1, 2] = math.inf
    assert masked_sum(x, MASK).item() == 16.0
    assert masked_sum(x, MASK, dim=-1).tolist() == [6.0, 10.0]


def test_masked_mean_over_all_and_per_row():
    assert masked_mean(X, MASK).item() == pytest.approx(16.0 / 5)
    assert masked_mean(X, MASK, dim=-1).tolist() == pytest.approx([2.0, 5.0])
    assert masked_mean(X, MASK.bool(), dim=0).tolist() == pytest.approx([2.5, 4.0, 3.0, 0.0])


def test_masked_mean_of_empty_mask_is_zero_not_nan():
    empty = torch.zeros_like(MASK)
    assert masked_mean(X, empty).item() == 0.0
    assert masked_mean(X, empty, dim=-1).tolist() == [0.0, 0.0]
    row_empty = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])
    assert masked_mean(X, row_empty, dim=-1).tolist() == [1.5, 0.0]


def test_masked_var_unbiased_and_biased():
    # valid values 1, 2, 3, 4, 6: mean 3.2, squared deviations sum 14.8
    assert masked_var(X, MASK).item() == pytest.approx(14.8 / 4)
    assert masked_var(X, MASK, unbiased=False).item() == pytest.approx(14.8 / 5)


def test_masked_var_with_too_few_elements_is_zero():
    one = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0]])
    assert masked_var(X, one).item() == 0.0
    assert masked_var(X, one, unbiased=False).item() == 0.0
    assert masked_var(X, torch.zeros_like(MASK)).item() == 0.0


def test_masked_whiten_standardises_valid_values_and_zeroes_padding():
    x = torch.tensor([[1.0, 3.0, 99.0], [5.0, -7.0, -7.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # valid 1, 3, 5: mean 3, unbiased var 4, std 2
    out = masked_whiten(x, mask, eps=0.0)
    assert torch.allclose(out, torch.tensor([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    kept_mean = masked_whiten(x, mask, shift_mean=False, eps=0.0)
    assert torch.allclose(kept_mean, torch.tensor([[2.0, 3.0, 0.0], [4.0, 0.0, 0.0]]))


def test_masked_whiten_of_empty_or_single_element_mask_is_finite():
    assert torch.equal(masked_whiten(X, torch.zeros_like(MASK)), torch.zeros_like(X))
    single = masked_whiten(X, torch.tensor([[0, 0, 1, 0], [0, 0, 0, 0]]))
    assert torch.equal(single, torch.zeros_like(X))


def test_whitening_across_ranks_equals_whitening_the_union_of_their_tensors():
    # Two "ranks" with ragged micro-batches; the all-reduce is simulated by adding the other
    # rank's sums, so each rank sees the statistics of the union.
    parts = [[X[:1, :3], X[1:, :2]], [torch.tensor([[9.0, -3.0, 0.5]])]]
    masks = [[MASK[:1, :3], MASK[1:, :2]], [torch.tensor([[1, 1, 0]])]]

    def local_sums(r):
        return torch.tensor([sum(float(masked_sum(x, m)) for x, m in zip(parts[r], masks[r])),
                             sum(float(masked_sum(x * x, m)) for x, m in zip(parts[r], masks[r])),
                             sum(float(m.sum()) for m in masks[r])], dtype=torch.float64)

    union = torch.tensor([1.0, 2.0, 3.0, 4.0, 6.0, 9.0, -3.0])
    expected = masked_whiten(union, torch.ones(7))
    got = []
    for r in (0, 1):
        other = local_sums(1 - r)
        whitened = masked_whiten_across_ranks(parts[r], masks[r], lambda t, o=other: t.add_(o))
        got += [w[m.bool()] for w, m in zip(whitened, masks[r])]
    assert torch.allclose(torch.cat(got), expected.float(), atol=1e-6)
    assert float(masked_whiten_across_ranks([torch.tensor([[5.0]])], [torch.ones(1, 1)], lambda t: t)[0]) == 5.0
