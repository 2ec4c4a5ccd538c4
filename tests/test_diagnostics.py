"""Reference tests of the diagnostics against known answers: ESS and split-R-hat on AR(1) chains."""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from ebmlib.evaluation import effective_sample_size, split_r_hat


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ ESS and split-R-hat
def ar1_chains(rho: float, n_chains: int, n_draws: int, seed: int) -> torch.Tensor:
    """Stationary AR(1) chains x_t = rho x_{t-1} + sqrt(1 - rho^2) e_t, N(0, 1) marginals, shape (C, N)."""
    return _ar1_chains(rho, n_chains, n_draws, seed).clone()


@lru_cache(maxsize=8)
def _ar1_chains(rho: float, n_chains: int, n_draws: int, seed: int) -> torch.Tensor:
    noise = torch.randn(n_chains, n_draws, generator=g(seed), dtype=torch.float64)
    x = torch.empty_like(noise)
    x[:, 0] = noise[:, 0]
    scale = (1 - rho**2) ** 0.5
    for t in range(1, n_draws):
        x[:, t] = rho * x[:, t - 1] + scale * noise[:, t]
    return x


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, -0.5])
def test_ess_of_ar1_chains_matches_the_analytic_value(rho):
    # ESS = N (1 - rho) / (1 + rho). Over 80 chains of 20000 draws (seeds 0-9), the per-chain relative
    # error had a standard deviation of 2% (rho = 0) to 9% (rho = 0.9), at most 33%, and the mean over
    # 8 chains was within 3.6%. Tolerances: every chain within 35%, the 8-chain mean within 10%.
    n_draws = 20_000
    expected = n_draws * (1 - rho) / (1 + rho)
    ess = effective_sample_size(ar1_chains(rho, 8, n_draws, seed=0))
    assert ess.shape == (8,)
    relative_error = ess / expected - 1
    assert float(relative_error.abs().max()) < 0.35
    assert abs(float(relative_error.mean())) < 0.10


def test_ess_keeps_parameter_dimensions_and_flags_a_constant_chain():
    chains = torch.randn(3, 100, 2, 5, generator=g(0))
    assert effective_sample_size(chains).shape == (3, 2, 5)
    chains[1, :, 0, 0] = 4.0  # a chain that never moved
    ess = effective_sample_size(chains)
    assert torch.isnan(ess[1, 0, 0]) and not torch.isnan(ess[0, 0, 0]) and not torch.isnan(ess[1, 0, 1])


def test_r_hat_is_one_for_mixed_chains_and_large_for_chains_stuck_apart():
    mixed = ar1_chains(0.9, 8, 20_000, seed=0)
    # Eight chains of one law: R-hat - 1 is of order 1 / ESS ~ 1e-3; the usual threshold is 1.01.
    assert float(split_r_hat(mixed)) < 1.01
    assert float(split_r_hat(mixed, rank_normalised=True)) < 1.01
    # Chains stuck around -1 and +1 (unit spread): R-hat = sqrt(1 + var of the means) ~ 1.5.
    stuck = mixed[:4] + torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64)[:, None]
    assert float(split_r_hat(stuck)) > 1.3
    assert float(split_r_hat(stuck, rank_normalised=True)) > 1.3


def test_splitting_catches_a_drift_and_ranks_catch_a_scale_difference():
    noise = ar1_chains(0.5, 4, 4000, seed=1)
    # Every chain drifts from -2 to 2: the half-chains' means are about -1 and 1, R-hat ~ 1.36.
    drifting = noise + torch.linspace(-2.0, 2.0, 4000, dtype=torch.float64)
    assert float(split_r_hat(drifting)) > 1.2
    # Same centre, one chain 4x wider: the means agree (classic R-hat < 1.05), the folded ranks
    # don't (rank-normalised R-hat > 1.1).
    wide = noise * torch.tensor([1.0, 1.0, 1.0, 4.0], dtype=torch.float64)[:, None]
    assert float(split_r_hat(wide)) < 1.05
    assert float(split_r_hat(wide, rank_normalised=True)) > 1.1


def test_r_hat_keeps_parameter_dimensions_and_rejects_bad_input():
    assert split_r_hat(torch.randn(4, 50, 3, generator=g(0))).shape == (3,)
    with pytest.raises(ValueError, match="n_draws >= 4"):
        split_r_hat(torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"got \(10,\)"):
        effective_sample_size(torch.randn(10))
    with pytest.raises(TypeError, match="torch.Tensor"):
        effective_sample_size([[1.0, 2.0, 3.0, 4.0]])  # type: ignore[arg-type]
