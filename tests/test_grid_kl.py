"""grid_kl: the KL divergence of smoothed grid histograms, data against samples."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlib.data import eight_gaussians
from ebmlib.evaluation import grid_kl


def points(n: int, seed: int) -> torch.Tensor:
    return eight_gaussians(n, torch.Generator().manual_seed(seed))


def test_identical_sets_score_zero_and_independent_draws_score_little():
    data = points(2000, 0)
    assert grid_kl(data, data) == 0.0
    assert grid_kl(data.double(), data) == 0.0
    # two independent draws of the same law: histogram noise only (measured 0.008 with these settings)
    assert 0.0 < grid_kl(points(2000, 1), data, limits=(-3, 3)) < 0.03


def test_known_answer_for_disjoint_halves():
    # The reference sits in one cell of a 2-cell 1D grid, the samples in the other; without smoothing,
    # p = (1 - a + a/2, a/2), q = (a/2, 1 - a + a/2), KL = p0 log(p0/q0) + p1 log(p1/q1).
    reference, samples = torch.full((10, 1), -0.5), torch.full((7, 1), 0.5)
    a = 0.1
    p0, p1 = 1 - a + a / 2, a / 2
    expected = p0 * math.log(p0 / p1) + p1 * math.log(p1 / p0)
    assert grid_kl(samples, reference, bins=2, limits=(-1, 1), smoothing=0, floor=a) == pytest.approx(expected)


def test_missing_modes_cost_more_the_more_are_missed():
    data = points(2000, 0)
    fresh = points(4000, 1)
    angle = torch.atan2(fresh[:, 1], fresh[:, 0])
    kls = [grid_kl(fresh[angle.abs() < limit], data, limits=(-3, 3)) for limit in (3.5, 2.5, 1.0, 0.3)]
    assert kls == sorted(kls) and kls[0] < 0.05 and kls[-1] > 3.0, kls


def test_points_outside_the_limits_count_in_the_border_cells():
    data = points(1000, 0)
    far = data * 100  # every point off the grid: all mass on the border
    assert grid_kl(far, data, limits=(-3, 3)) > 3.0
    assert grid_kl(data, data, limits=(-1, 1)) == 0.0  # clipped alike: identical histograms


def test_limits_default_to_the_reference_range_widened():
    data = points(1000, 0)
    low, high = float(data.min()), float(data.max())
    margin = 0.1 * (high - low)
    samples = points(1000, 2)
    assert grid_kl(samples, data) == grid_kl(samples, data, limits=(low - margin, high + margin))


def test_smoothing_lowers_the_noise_of_small_samples():
    data = points(500, 0)
    samples = points(500, 1)
    assert grid_kl(samples, data, smoothing=2.0) < grid_kl(samples, data, smoothing=0.0)


def test_works_in_one_and_three_dimensions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 3, generator=g), torch.randn(2000, 3, generator=g)
    assert grid_kl(a, b, bins=8) < 0.05 < grid_kl(a + 2, b, bins=8)
    assert grid_kl(a[:, :1], b[:, :1]) < 0.05


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"samples": torch.zeros(5)}, r"samples must be a non-empty floating tensor of shape \(N, D\)"),
    ({"reference": torch.zeros(0, 2)}, r"reference must be a non-empty floating tensor"),
    ({"samples": torch.zeros(5, 2, dtype=torch.long)}, r"samples must be a non-empty floating tensor"),
    ({"samples": torch.zeros(5, 3)}, r"the same dimension D"),
    ({"samples": torch.tensor([[0.0, float("nan")]])}, r"samples contain NaN or Inf"),
    ({"bins": 1}, r"bins must be an integer >= 2"),
    ({"bins": 4096}, r"cells is more than"),
    ({"limits": (1.0, -1.0)}, r"low < high"),
    ({"limits": (0.0, float("inf"))}, r"finite"),
    ({"smoothing": -1.0}, r"smoothing must be"),
    ({"floor": 0.0}, r"floor must be a number in \(0, 1\)"),
])
def test_bad_inputs_are_named(kwargs, message):
    arguments = {"samples": torch.zeros(5, 2), "reference": torch.ones(4, 2), **kwargs}
    with pytest.raises(ValueError, match=message):
        grid_kl(**arguments)


def test_a_non_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="samples must be a torch.Tensor"):
        grid_kl([[0.0, 0.0]], torch.zeros(3, 2))  # type: ignore[arg-type]
