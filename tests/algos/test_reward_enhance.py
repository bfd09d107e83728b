"""Reward enhancement and RM z-scoring, pinned to hand-computed numbers (CPU only)."""

import math

import pytest
import torch

from repo_ray.algos import RMNormalizer, enhance_reward, enhancement


def test_zero_rm_score_gives_zero_whatever_the_enhancement():
    for e_judge, e_func in [(50.0, 50.0), (-300.0, 0.0), (0.0, 0.0), (100.0, -3.0)]:
        assert enhance_reward(0.0, e_judge, e_func) == 0.0


def test_positive_rm_score_is_scaled_by_one_plus_e_over_n():
    assert enhance_reward(2.0, 30.0, 20.0) == pytest.approx(3.0)  # 2 * (1 + 50/100)
    assert enhance_reward(2.0, -30.0, 5.0) == pytest.approx(1.5)  # 2 * (1 - 25/100)


def test_enhancement_at_and_beyond_n_is_clipped():
    assert enhance_reward(2.0, 60.0, 40.0) == pytest.approx(4.0)  # E exactly n -> 2 * R_model
    assert enhance_reward(2.0, 100.0, 50.0) == pytest.approx(4.0)  # 150 clips to 100
    assert enhance_reward(2.0, -60.0, -40.0) == pytest.approx(0.0)  # E exactly -n -> 0
    assert enhance_reward(2.0, -100.0, -50.0) == pytest.approx(0.0)  # -150 clips to -100, never below 0


def test_negative_rm_score_penalty_reduced_by_positive_and_amplified_by_negative_enhancement():
    assert enhance_reward(-2.0, 30.0, 20.0) == pytest.approx(-1.0)
    assert enhance_reward(-2.0, -30.0, -20.0) == pytest.approx(-3.0)
    assert enhance_reward(-2.0, 120.0, 30.0) == pytest.approx(0.0)  # clipped: penalty at most removed
    assert enhance_reward(-2.0, -120.0, -30.0) == pytest.approx(-4.0)


def test_only_the_sum_is_clipped_not_each_source():
    assert enhancement(80.0, -60.0, 100.0) == pytest.approx(20.0)
    assert enhancement(150.0, -60.0, 100.0) == pytest.approx(90.0)  # clipping e_judge first would give 40
    assert enhance_reward(1.0, 150.0, -60.0) == pytest.approx(1.9)


def test_custom_n_scales_the_enhancement():
    assert enhancement(8.0, 4.0, n=10.0) == pytest.approx(10.0)
    assert enhance_reward(3.0, 2.0, 3.0, n=10.0) == pytest.approx(4.5)  # 3 * (1 + 5/10)


def test_float_inputs_give_a_python_float():
    assert type(enhance_reward(1, 2, 3)) is float
    assert type(enhancement(1, 2, 100.0)) is float


def test_tensor_and_float_paths_agree_and_broadcast():
    r = torch.tensor([2.0, -2.0, 0.0, 2.0, -2.0])
    ej = torch.tensor([30.0, 30.0, 99.0, 100.0, -100.0])
    ef = torch.tensor([20.0, 20.0, 1.0, 50.0, -50.0])
    out = enhance_reward(r, ej, ef)
    assert torch.allclose(out, torch.tensor([3.0, -1.0, 0.0, 4.0, -4.0]))
    floats = [enhance_reward(float(a), float(b), float(c)) for a, b, c in zip(r, ej, ef, strict=True)]
    assert out.tolist() == pytest.approx(floats)
    # scalar sources broadcast over a batch of RM scores
    assert torch.allclose(enhance_reward(torch.tensor([1.0, -1.0]), 50.0, 0.0), torch.tensor([1.5, -0.5]))
    assert torch.allclose(enhancement(torch.tensor([80.0, 150.0]), -60.0, 100.0), torch.tensor([20.0, 90.0]))


def test_sign_of_rm_score_never_flips():
    r = torch.linspace(-5, 5, 11).repeat_interleave(7)
    e = torch.tensor([-1000.0, -150.0, -100.0, 0.0, 100.0, 150.0, 1000.0]).repeat(11)
    out = enhance_reward(r, e, torch.zeros_like(e))
    assert torch.all(out * r >= 0)
    assert torch.all(out.abs() <= 2 * r.abs())


@pytest.mark.parametrize("n", [0.0, -1.0, math.inf, math.nan])
def test_n_must_be_positive_and_finite(n):
    with pytest.raises(ValueError, match="n must be"):
        enhance_reward(1.0, 0.0, 0.0, n=n)


def test_rm_normalizer_fits_mean_and_sample_std():
    norm = RMNormalizer.fit([2.0, 4.0, 6.0, 8.0])
    assert norm.mean == pytest.approx(5.0)
    assert norm.std == pytest.approx(2.5819889)  # sqrt(20 / 3), n - 1 in the denominator
    assert norm(8.0) == pytest.approx(1.1618950)
    assert norm(5.0) == 0.0
    assert torch.allclose(norm(torch.tensor([5.0, 2.0])), torch.tensor([0.0, -1.1618950]))


def test_rm_normalizer_floors_std_of_constant_reference_scores():
    norm = RMNormalizer.fit(torch.tensor([3.0, 3.0, 3.0]), eps=1e-3)
    assert norm.std == 1e-3
    assert norm(3.0) == 0.0
    assert norm(3.001) == pytest.approx(1.0)


def test_rm_normalizer_needs_two_finite_reference_scores():
    with pytest.raises(ValueError, match="at least 2"):
        RMNormalizer.fit([1.0])
    with pytest.raises(ValueError, match="at least 2"):
        RMNormalizer.fit([])
    with pytest.raises(ValueError, match="NaN or inf"):
        RMNormalizer.fit([1.0, math.nan])


def test_rm_normalizer_identity_leaves_scores_unchanged():
    norm = RMNormalizer.identity()
    assert norm(-1.25) == -1.25
    assert torch.equal(norm(torch.tensor([0.5, -3.0])), torch.tensor([0.5, -3.0]))


def test_rm_normalizer_is_frozen_and_rejects_bad_std():
    norm = RMNormalizer(1.0, 2.0)
    with pytest.raises(AttributeError):
        norm.mean = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        RMNormalizer(0.0, 0.0)
