"""Reference tests of the diagnostics against known answers: ESS and split-R-hat on AR(1) chains, KSD,
temperature scaling."""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch

from ebmlib.evaluation import (
    TemperatureScaled,
    effective_sample_size,
    expected_calibration_error,
    fit_temperature,
    kernel_stein_discrepancy,
    split_r_hat,
)
from ebmlib.models import MLP, ClassifierEnergy, NetworkEnergy
from tests.energies import gaussian_2d


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


# ------------------------------------------------------------------------------ kernel Stein discrepancy
def stein_kernel_by_autograd(energy, a: torch.Tensor, b: torch.Tensor, scale: float, exponent: float) -> torch.Tensor:
    """u(a, b) = s(a).s(b) k + s(a).grad_b k + s(b).grad_a k + tr(grad_a grad_b k), every derivative by autograd."""
    a = a.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    score_a = -torch.autograd.grad(energy(a[None]).sum(), a)[0]
    score_b = -torch.autograd.grad(energy(b[None]).sum(), b)[0]
    kernel = (scale**2 + (a - b).pow(2).sum()).pow(exponent)
    grad_a, grad_b = torch.autograd.grad(kernel, (a, b), create_graph=True)
    trace = sum(torch.autograd.grad(grad_a[d], b, retain_graph=True)[0][d] for d in range(a.shape[0]))
    return score_a @ score_b * kernel + score_a @ grad_b + score_b @ grad_a + trace


def test_stein_kernel_matches_its_definition_by_autograd():
    torch.manual_seed(0)
    model = NetworkEnergy(MLP(3, 1, hidden=8, depth=2)).double()  # a non-Gaussian energy
    x = torch.randn(6, 3, generator=g(0), dtype=torch.float64)
    u = torch.stack([torch.stack([stein_kernel_by_autograd(model, a, b, 1.5, -0.3) for b in x]) for a in x])
    v_statistic = kernel_stein_discrepancy(model, x, scale=1.5, exponent=-0.3)
    u_statistic = kernel_stein_discrepancy(model, x, scale=1.5, exponent=-0.3, unbiased=True)
    torch.testing.assert_close(v_statistic, u.mean(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(u_statistic, (u.sum() - u.diagonal().sum()) / 30, rtol=1e-10, atol=1e-12)
    assert all(p.grad is None for p in model.parameters())


def test_ksd_separates_target_samples_from_a_slightly_shifted_target():
    # Target N((1, -2), diag(0.5, 2)); the alternative is shifted by 0.3 standard deviations in its first
    # coordinate, n = 1000 samples each, IMQ c = 1, beta = -1/2. Measured on these 5 seeds: V-statistic
    # 0.0033-0.0052 on target samples, 0.085-0.142 on shifted ones (17-43x), U-statistic of target samples
    # within 0.0013 of 0. Required for every seed: target < 0.01 < 0.05 < shifted, a ratio above 5, and a
    # U-statistic within 0.005 of 0.
    model = gaussian_2d().double()
    std = torch.tensor([0.5, 2.0], dtype=torch.float64).sqrt()
    shift = torch.tensor([0.3 * 0.5**0.5, 0.0], dtype=torch.float64)
    for seed in range(5):
        on_target = model.mean.detach() + std * torch.randn(1000, 2, generator=g(seed), dtype=torch.float64)
        shifted = shift + model.mean.detach() + std * torch.randn(1000, 2, generator=g(100 + seed),
                                                                  dtype=torch.float64)
        ksd_target = float(kernel_stein_discrepancy(model, on_target))
        ksd_shifted = float(kernel_stein_discrepancy(model, shifted))
        assert ksd_target < 0.01 and ksd_shifted > 0.05, (seed, ksd_target, ksd_shifted)
        assert ksd_shifted > 5 * ksd_target, (seed, ksd_target, ksd_shifted)
        assert abs(float(kernel_stein_discrepancy(model, on_target, unbiased=True))) < 0.005


def test_ksd_rejects_bad_input():
    model = gaussian_2d()
    with pytest.raises(ValueError, match="at least 2 points"):
        kernel_stein_discrepancy(model, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="exponent"):
        kernel_stein_discrepancy(model, torch.zeros(5, 2), exponent=0.5)
    with pytest.raises(ValueError, match="scale"):
        kernel_stein_discrepancy(model, torch.zeros(5, 2), scale=0.0)


# ------------------------------------------------------------------------------------ temperature scaling
def softmax_labelled_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x ~ N(0, I_5) and labels drawn from softmax(x W) for a fixed W (5 features, 4 classes): (x, labels, W)."""
    weight = torch.randn(5, 4, generator=g(0))
    x = torch.randn(n, 5, generator=g(seed))
    labels = torch.multinomial((x @ weight).softmax(dim=1), 1, generator=g(seed + 1000)).squeeze(1)
    return x, labels, weight


@pytest.mark.parametrize("true_temperature", [3.0, 0.5])
def test_fitted_temperature_recovers_the_scale_of_the_logits(true_temperature):
    # Labels come from softmax(f); the fit sees T f, so the exact answer is T. Over 20 seeds at N = 20000
    # the relative error had a standard deviation of 1% and was at most 2.1%; tolerance 4%.
    x, labels, weight = softmax_labelled_data(20_000, seed=1)
    temperature = fit_temperature(true_temperature * (x @ weight), labels)
    assert temperature.shape == () and temperature.dtype == torch.float32
    assert float(temperature) == pytest.approx(true_temperature, rel=0.04)


def test_temperature_scaling_lowers_the_ece_of_an_over_confident_classifier():
    # The classifier's logits are 4x the true ones. Fitted on 5000 held-out points and scored on 5000 others
    # (5 seeds measured): T = 3.92-4.02, ECE 0.214-0.226 before and 0.010-0.017 after. Required: T within
    # 10% of 4, ECE above 0.15 before and below 0.03 after.
    x, labels, weight = softmax_labelled_data(10_000, seed=50)
    network = torch.nn.Linear(5, 4, bias=False)
    with torch.no_grad():
        network.weight.copy_(4 * weight.T)
    classifier = ClassifierEnergy(network, n_classes=4)
    scaled = TemperatureScaled.fit(classifier, x[:5000], labels[:5000])
    assert float(scaled.temperature) == pytest.approx(4.0, rel=0.1)
    with torch.no_grad():
        before = float(expected_calibration_error(classifier.class_probabilities(x[5000:]), labels[5000:]))
        after = float(expected_calibration_error(scaled.class_probabilities(x[5000:]), labels[5000:]))
        # the predictions themselves are unchanged
        assert torch.equal(scaled.logits(x).argmax(1), classifier.logits(x).argmax(1))
    assert before > 0.15 and after < 0.03, (before, after)


def test_temperature_scaled_energy_shares_the_network_and_round_trips():
    classifier = ClassifierEnergy(torch.nn.Linear(3, 4), n_classes=4)
    scaled = TemperatureScaled(classifier, temperature=2.5)
    x, y = torch.randn(6, 3, generator=g(0)), torch.tensor([0, 1, 2, 3, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(scaled(x), -torch.logsumexp(classifier.logits(x) / 2.5, dim=1))
        torch.testing.assert_close(scaled(x, y), classifier(x, y) / 2.5)
    assert scaled.network is classifier.network
    copy = TemperatureScaled(ClassifierEnergy(torch.nn.Linear(3, 4), n_classes=4), temperature=1.0)
    copy.load_state_dict(scaled.state_dict())
    assert float(copy.temperature) == 2.5
    with torch.no_grad():
        torch.testing.assert_close(copy.logits(x), scaled.logits(x))


def test_temperature_scaling_rejects_bad_input():
    classifier = ClassifierEnergy(torch.nn.Linear(3, 4), n_classes=4)
    with pytest.raises(ValueError, match="temperature must be positive"):
        TemperatureScaled(classifier, temperature=0.0)
    with pytest.raises(TypeError, match="overrides"):
        TemperatureScaled(TemperatureScaled(classifier, 2.0), 2.0)
    with pytest.raises(ValueError, match=r"shape \(N, K\)"):
        fit_temperature(torch.zeros(5), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        fit_temperature(torch.zeros(5, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must lie in"):
        fit_temperature(torch.zeros(5, 4), torch.full((5,), 4))
