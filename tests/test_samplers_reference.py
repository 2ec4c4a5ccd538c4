"""Reference tests of the annealed, underdamped, tempered and no-U-turn samplers against known answers.

Every test uses a fixed seed and states its tolerance next to the assertion, with the standard
error it is measured against. The targets are small EnergyModel subclasses defined here:

- ``Mixture``: two unit-variance Gaussians in 2D, 8 standard deviations apart at (-4, 0) and
  (4, 0), with weights 0.2 and 0.8. The midpoint x_0 = 0 separates the modes (the mass of a mode
  beyond it is 3e-5), so the recovered weight of the right mode is the fraction of chains with
  x_0 > 0. Called with labels ``k``, it is the mixture convolved with N(0, sigma_k^2 I): the
  exact noise-conditional energy annealed Langevin needs.
- ``CorrelatedGaussian``: N(mean, covariance) for a full covariance.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from ebmlib.evaluation.mcmc_diagnostics import effective_sample_size
from ebmlib.models import EnergyModel
from ebmlib.samplers import (
    HMC,
    MALA,
    NUTS,
    AnnealedLangevin,
    ChainState,
    KineticState,
    Langevin,
    NUTSInfo,
    ParallelTempering,
    TemperedState,
    UnderdampedLangevin,
    geometric_temperatures,
)

RIGHT_WEIGHT = 0.8


class Mixture(EnergyModel):
    """E(x) = -log(0.2 N(x; (-4, 0), v I) + 0.8 N(x; (4, 0), v I)), v = 1 + sigma_k^2 (sigma = 0 without labels)."""

    def __init__(self, noise_levels: list[float] | None = None) -> None:
        super().__init__()
        self.register_buffer("means", torch.tensor([[-4.0, 0.0], [4.0, 0.0]]))
        self.register_buffer("log_weights", torch.tensor([1 - RIGHT_WEIGHT, RIGHT_WEIGHT]).log())
        self.register_buffer("noise_levels", torch.tensor(noise_levels or [0.0]))

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        noise_var = self.noise_levels[y] ** 2 if y is not None else x.new_zeros(x.shape[0])
        var = (1.0 + noise_var)[:, None]
        squared_distance = (x[:, None, :] - self.means).pow(2).sum(-1)
        log_components = self.log_weights - squared_distance / (2 * var) - torch.log(2 * math.pi * var)
        return -torch.logsumexp(log_components, dim=1)


def right_weight(x: Tensor) -> float:
    return float((x[:, 0] > 0).double().mean())


class CorrelatedGaussian(EnergyModel):
    """E(x) = 0.5 (x - mean)^T covariance^{-1} (x - mean)."""

    def __init__(self, mean: Tensor, covariance: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("precision", torch.linalg.inv(covariance))

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        centred = x - self.mean
        return 0.5 * (centred @ self.precision * centred).sum(1)


def covariance(x: Tensor) -> Tensor:
    return torch.cov(x.T)


# ------------------------------------------------------------------------------ annealed Langevin
@pytest.mark.slow
def test_annealed_langevin_recovers_mode_weights_where_plain_langevin_keeps_the_wrong_ones():
    # 3000 chains all start in the light mode (weight 0.2). Standard error of a recovered weight:
    # sqrt(0.16 / 3000) = 0.007; tolerance 0.05 (measured: 0.797; 0.78 to 0.81 over other seeds).
    levels = torch.logspace(math.log10(20.0), math.log10(0.2), 16).tolist()
    start = torch.tensor([-4.0, 0.0], dtype=torch.float64).expand(3000, 2)
    annealed = AnnealedLangevin(step_size=0.005, noise_levels=levels, steps_per_level=60)
    x = annealed.sample(Mixture(levels).double(), start, generator=torch.Generator().manual_seed(0))
    assert abs(right_weight(x) - RIGHT_WEIGHT) < 0.05
    # the chains end at the last level, N(mode, (1 + 0.04) I) per mode: within-mode spread within 15%
    torch.testing.assert_close(x[x[:, 0] > 0].std(0), torch.full((2,), 1.02, dtype=torch.float64), rtol=0.15, atol=0)

    # plain Langevin for as many steps stays where it started (measured: 0.03 of the chains crossed)
    plain = Langevin(step_size=0.05).sample(Mixture().double(), start[:1000], n_steps=annealed.n_steps,
                                            generator=torch.Generator().manual_seed(0))
    assert right_weight(plain) < 0.2


def test_annealed_langevin_schedule_and_update_rule():
    sampler = AnnealedLangevin(step_size=0.1, temperatures=[4.0, 1.0], steps_per_level=2)
    assert sampler.n_steps == 4
    model = CorrelatedGaussian(torch.zeros(2), torch.eye(2))
    x0 = torch.tensor([[1.0, -2.0]])
    generator, replay = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    state: ChainState = ChainState(x0)
    for temperature in [4.0, 4.0, 1.0, 1.0, 1.0]:  # the last level holds after the schedule ends
        expected = state.position - 0.1 * state.position + math.sqrt(2 * 0.1 * temperature) * torch.randn(
            1, 2, generator=replay)
        state, _ = sampler.step(model, state, generator=generator)
        torch.testing.assert_close(state.position, expected)
    assert int(state.step_index) == 5


def test_annealed_langevin_noise_levels_pass_the_level_to_the_model_and_scale_the_step():
    levels = [3.0, 1.0]
    seen: list[Tensor] = []

    class Recording(Mixture):
        def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
            seen.append(y)
            return super().energy(x, y)

    sampler = AnnealedLangevin(step_size=0.01, noise_levels=levels, steps_per_level=1)
    x, diagnostics = sampler.sample(Recording(levels), torch.zeros(3, 2), n_steps=3, return_diagnostics=True)
    assert [t.tolist() for t in seen] == [[0, 0, 0], [1, 1, 1], [1, 1, 1]]
    torch.testing.assert_close(sampler.drift_sizes, torch.tensor([0.09, 0.01], dtype=torch.float64))
    with pytest.raises(ValueError, match="y must be None"):
        sampler.sample(Mixture(levels), torch.zeros(3, 2), y=torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of temperatures and noise_levels"),
        ({"temperatures": [1.0], "noise_levels": [1.0]}, "exactly one"),
        ({"temperatures": [1.0, 2.0]}, "non-increasing"),
        ({"noise_levels": [1.0, 0.0]}, "positive"),
        ({"temperatures": []}, "non-empty"),
        ({"temperatures": [1.0], "steps_per_level": 0}, "steps_per_level"),
    ],
)
def test_annealed_langevin_bad_configuration_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AnnealedLangevin(step_size=0.1, **kwargs)


# --------------------------------------------------------------------------- underdamped Langevin
def test_underdamped_langevin_recovers_a_correlated_gaussian():
    # N((1, -1), [[2, 1.2], [1.2, 1]]) (correlation 0.85, covariance eigenvalues 2.8 and 0.2), 8000 chains from 0,
    # 300 steps of h = 0.3 (90 time units; the slowest mode relaxes in a few). Standard errors: mean <= 0.019,
    # covariance entries <= 0.032. Tolerances: mean within 0.06, covariance within 0.03 + 6% (~4.5 s.e.).
    # Measured: mean (1.012, -0.993), covariance [[2.024, 1.198], [1.198, 0.993]].
    mean = torch.tensor([1.0, -1.0], dtype=torch.float64)
    target_covariance = torch.tensor([[2.0, 1.2], [1.2, 1.0]], dtype=torch.float64)
    model = CorrelatedGaussian(mean, target_covariance)
    x = UnderdampedLangevin(step_size=0.3, friction=1.0).sample(
        model, torch.zeros(8000, 2, dtype=torch.float64), n_steps=300, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(x.mean(0), mean, atol=0.06, rtol=0)
    torch.testing.assert_close(covariance(x), target_covariance, atol=0.03, rtol=0.06)
    # the same step is far too large for overdamped Langevin: its variance along the narrow direction
    # (0.2) becomes 0.2 / (1 - 0.3 / 0.4) = 0.8, and the covariance is off by much more than the tolerance
    # (measured: [[2.31, 1.00], [1.00, 1.43]])
    ula = Langevin(step_size=0.3).sample(model, torch.zeros(8000, 2, dtype=torch.float64), n_steps=300,
                                         generator=torch.Generator().manual_seed(0))
    assert float((covariance(ula) - target_covariance).abs().max()) > 0.3


def test_underdamped_langevin_update_rule_is_baoab_and_velocity_is_carried():
    model = CorrelatedGaussian(torch.zeros(2), torch.eye(2))  # grad E(x) = x
    h, friction = 0.2, 0.5
    x0, v0 = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, -1.0]])
    state, info = UnderdampedLangevin(step_size=h, friction=friction).step(
        model, KineticState(x0, velocity=v0), generator=torch.Generator().manual_seed(0))
    noise = torch.randn(1, 2, generator=torch.Generator().manual_seed(0))
    damping = math.exp(-friction * h)
    v = v0 - h / 2 * x0
    x = x0 + h / 2 * v
    v = damping * v + math.sqrt(1 - damping**2) * noise
    x = x + h / 2 * v
    v = v - h / 2 * x
    assert isinstance(state, KineticState)
    torch.testing.assert_close(state.position, x)
    torch.testing.assert_close(state.velocity, v)
    torch.testing.assert_close(info.energy, torch.tensor([2.5]))
    # a plain ChainState starts with velocities drawn from N(0, I): the generator's first draw, before the noise
    replay = torch.Generator().manual_seed(0)
    v_fresh, noise = torch.randn(1, 2, generator=replay), torch.randn(1, 2, generator=replay)
    v = v_fresh - h / 2 * x0
    x = x0 + h / 2 * v + h / 2 * (damping * v + math.sqrt(1 - damping**2) * noise)
    fresh, _ = UnderdampedLangevin(step_size=h, friction=friction).step(
        model, ChainState(x0), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fresh.position, x)


@pytest.mark.parametrize(
    "kwargs, message", [({"step_size": 0.0}, "step_size"), ({"step_size": 0.1, "friction": 0.0}, "friction")]
)
def test_underdamped_langevin_bad_configuration_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UnderdampedLangevin(**kwargs)


# --------------------------------------------------------------------------------- parallel tempering
PT_BASES = {"mala": (lambda: MALA(step_size=0.5), 400), "hmc": (lambda: HMC(step_size=0.5, n_leapfrog=3), 200)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PT_BASES))
def test_parallel_tempering_recovers_mode_weights_where_its_base_sampler_fails(name):
    # 1000 chains start in the light mode; ladder 1, 2.5, 6.3, 16 (the barrier of 7.8 nats is 0.5 nats at T = 16).
    # Standard error of the recovered weight: sqrt(0.16 / 1000) = 0.013; tolerance 0.05
    # (measured: 0.789 with MALA, 0.792 with HMC).
    make_base, n_steps = PT_BASES[name]
    start = torch.tensor([-4.0, 0.0], dtype=torch.float64).expand(1000, 2)
    sampler = ParallelTempering(make_base(), geometric_temperatures(16.0, 4))
    generator = torch.Generator().manual_seed(0)
    state: ChainState = ChainState(start)
    for _ in range(n_steps):
        state, info = sampler.step(Mixture().double(), state, generator=generator)
    assert abs(right_weight(state.position) - RIGHT_WEIGHT) < 0.05
    assert isinstance(state, TemperedState)
    # swap diagnostics: every neighbouring pair swaps often on this 2D target (measured: 0.53 to 0.62)
    rates = state.swap_acceptance_rate
    assert rates.shape == (3,) and bool((rates > 0.3).all()) and bool((rates <= 1).all())
    assert info.acceptance_rate is not None and info.acceptance_rate.shape == (1000,)
    # the base sampler alone, as many steps from the same start, stays in the light mode (measured: 0.02, 0.05)
    alone = make_base().sample(Mixture().double(), start, n_steps=n_steps, generator=torch.Generator().manual_seed(0))
    assert right_weight(alone) < 0.2


def test_parallel_tempering_every_replica_samples_its_own_temperature():
    # On N((1, -2), diag(0.5, 2)) the replica at temperature T samples N((1, -2), T diag(0.5, 2)).
    # 2000 chains, 150 MALA steps; variance standard error ~3% relative; tolerance 12%, mean within 0.15 * sqrt(T).
    temperatures = [1.0, 3.0, 9.0]
    model = CorrelatedGaussian(torch.tensor([1.0, -2.0], dtype=torch.float64),
                               torch.diag(torch.tensor([0.5, 2.0], dtype=torch.float64)))
    sampler = ParallelTempering(MALA(step_size=0.4), temperatures)
    state: ChainState = ChainState(torch.zeros(2000, 2, dtype=torch.float64))
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        state, _ = sampler.step(model, state, generator=generator)
    assert isinstance(state, TemperedState) and state.replicas is not None and state.ranks is not None
    positions = state.replicas.position.view(3, 2000, 2)
    for rank, temperature in enumerate(temperatures):
        at_rank = positions.gather(0, (state.ranks == rank).long().argmax(0).view(1, -1, 1).expand(1, -1, 2))[0]
        torch.testing.assert_close(at_rank.mean(0), model.mean, atol=0.15 * math.sqrt(temperature), rtol=0)
        torch.testing.assert_close(at_rank.var(0), temperature * torch.tensor([0.5, 2.0], dtype=torch.float64),
                                   rtol=0.12, atol=0)
    torch.testing.assert_close(state.position, positions.gather(
        0, (state.ranks == 0).long().argmax(0).view(1, -1, 1).expand(1, -1, 2))[0])


def test_parallel_tempering_swap_rule():
    # flat energy: every swap is accepted. Even pairs first, (T1, T2): slots 0 and 1 exchange T1 and T2; then odd
    # pairs, (T2, T3): slots 0 and 2 exchange them. Slot 0 ends at T3, slot 1 at T1 and slot 2 at T2.
    class Flat(torch.nn.Module):
        def forward(self, x, y=None):
            return 0 * x.sum(1)

    sampler = ParallelTempering(Langevin(step_size=0.1), [1.0, 2.0, 4.0])
    state, info = sampler.step(Flat(), ChainState(torch.zeros(5, 2)), generator=torch.Generator().manual_seed(0))
    assert isinstance(state, TemperedState) and state.ranks is not None
    assert state.ranks.tolist() == [[2] * 5, [0] * 5, [1] * 5]
    torch.testing.assert_close(state.swap_acceptance_rate, torch.ones(2))
    torch.testing.assert_close(info.acceptance_rate, torch.ones(5))

    # a pair swaps with probability min(1, exp((beta_1 - beta_2)(E_1 - E_2))), one uniform draw per chain and pair
    energy = torch.tensor([[1.0, 3.0, 5.0], [2.0, 2.0, 2.0]])  # (K = 2, B = 3): slot 0 holds T = 1, slot 1 T = 2
    betas = torch.tensor([1.0, 0.5])
    replica_of_rank, acceptance = sampler.swap(energy, torch.tensor([[0, 0, 0], [1, 1, 1]]), betas,
                                               torch.Generator().manual_seed(0))
    expected = torch.tensor([[-0.5, 0.5, 1.5]]).clamp(max=0).exp()
    torch.testing.assert_close(acceptance, expected)
    swapped = torch.rand(1, 3, generator=torch.Generator().manual_seed(0)) < expected
    assert replica_of_rank[0].tolist() == swapped.long()[0].tolist()


def test_parallel_tempering_keeps_the_base_samplers_own_state():
    # a swap exchanges temperatures, not states: the base's velocities survive every step
    sampler = ParallelTempering(UnderdampedLangevin(step_size=0.1), [1.0, 2.0])
    state: ChainState = ChainState(torch.zeros(4, 2))
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        state, _ = sampler.step(CorrelatedGaussian(torch.zeros(2), torch.eye(2)), state, generator=generator)
    assert isinstance(state, TemperedState) and isinstance(state.replicas, KineticState)
    assert state.replicas.velocity is not None and state.replicas.velocity.shape == (8, 2)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: ParallelTempering(MALA(step_size=0.1), [1.0]), ValueError, "at least two increasing"),
        (lambda: ParallelTempering(MALA(step_size=0.1), [1.0, 1.0]), ValueError, "increasing"),
        (lambda: ParallelTempering(MALA(step_size=0.1), [0.0, 1.0]), ValueError, "positive"),
        (lambda: ParallelTempering("mala", [1.0, 2.0]), TypeError, "base must be an ebmlib Sampler"),
        (lambda: ParallelTempering(Langevin(step_size=0.1, compile_gradient=True), [1.0, 2.0]), ValueError,
         "compile_gradient"),
        (lambda: geometric_temperatures(1.0, 3), ValueError, "max_temperature"),
        (lambda: geometric_temperatures(4.0, 1), ValueError, "n_temperatures"),
    ],
)
def test_parallel_tempering_bad_configuration_is_a_clear_error(make, error, message):
    with pytest.raises(error, match=message):
        make()


# --------------------------------------------------------------------------------------------- NUTS
def ill_conditioned_gaussian(dimension: int = 10) -> tuple[CorrelatedGaussian, Tensor, Tensor]:
    """N(0, Q diag(v) Q^T) with variances v log-spaced from 1 to 100 (condition number 100), Q a fixed rotation."""
    variances = torch.logspace(0, 2, dimension, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(dimension, dimension, dtype=torch.float64,
                                              generator=torch.Generator().manual_seed(0)))
    model = CorrelatedGaussian(torch.zeros(dimension, dtype=torch.float64),
                               rotation @ torch.diag(variances) @ rotation.T)
    return model, variances, rotation


def run_chains(sampler, model, x0, n_warmup, n_draws, seed):
    """Draws (chains, draws, D) after ``n_warmup`` steps, and gradient evaluations per draw: the mean over chains
    and what the batch evaluated (NUTS reports both; HMC's are its n_leapfrog)."""
    generator, state, draws = torch.Generator().manual_seed(seed), ChainState(x0), []
    per_chain = batch = 0.0
    for i in range(n_warmup + n_draws):
        state, info = sampler.step(model, state, generator=generator)
        if i >= n_warmup:
            draws.append(state.position)
            if isinstance(info, NUTSInfo):
                per_chain += float(info.n_leapfrog.double().mean())
                batch += float(info.n_batch_leapfrog)
            else:
                per_chain += sampler.n_leapfrog
                batch += sampler.n_leapfrog
    return torch.stack(draws, dim=1), per_chain / n_draws, batch / n_draws


@pytest.mark.slow
def test_nuts_recovers_an_ill_conditioned_gaussian_at_fewer_gradients_per_effective_sample_than_fixed_length_hmc():
    # Target: 10-D Gaussian, covariance variances 1 ... 100 (condition number 100) in a random rotation; unit mass,
    # step size 1 for every sampler. 100 chains start from N(0, I) (not the target), 15 steps of warm-up, then 100
    # draws per chain. Read in the eigenbasis, standardised: z_i = (Q^T x)_i / sqrt(v_i) ~ N(0, 1).
    #
    # ESS: ebmlib's per-chain effective_sample_size (Geyer's initial monotone sequence), averaged over chains, of
    # each z_i and z_i^2; the figure is the worst of those 20 functions. Cost: gradient evaluations (one per leapfrog
    # step) per draw, per chain. Efficiency: gradient evaluations per effective sample (lower is better).
    model, variances, rotation = ill_conditioned_gaussian()
    x0 = torch.randn(100, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def evaluate(sampler):
        draws, per_chain, batch = run_chains(sampler, model, x0, n_warmup=15, n_draws=100, seed=0)
        z = draws @ rotation / variances.sqrt()
        worst_ess = float(torch.minimum(effective_sample_size(z).mean(0), effective_sample_size(z**2).mean(0)).min())
        return z, per_chain * 100 / worst_ess, batch * 100 / worst_ess

    z, nuts_cost, nuts_batch_cost = evaluate(NUTS(step_size=1.0))
    # moments: NUTS's worst ESS is 43 per chain, 4300 in all, so standard errors <= 0.016 (mean) and 0.022
    # (variance); tolerances 0.07 and 0.1, about 4.5 standard errors (measured: max errors 0.018 and 0.057)
    pooled = z.flatten(0, 1)
    torch.testing.assert_close(pooled.mean(0), torch.zeros(10, dtype=torch.float64), atol=0.07, rtol=0)
    torch.testing.assert_close(pooled.var(0), torch.ones(10, dtype=torch.float64), atol=0.1, rtol=0)

    # HMC at fixed trajectory lengths of 10 and 20 steps (around the pi/2 * 10 = 16 the widest direction needs)
    # measured 151 and 294 gradients per effective sample, against NUTS's 53 per chain (23 gradients per draw).
    # NUTS's batch, which steps all chains until the longest trajectory ends (68 per draw), evaluated 158.
    # (Seeds 1 and 2: NUTS 57 and 52 per chain, 169 and 153 for the batch; HMC 155 and 153, 277 and 250.)
    for n_leapfrog in (10, 20):
        _, hmc_cost, _ = evaluate(HMC(step_size=1.0, n_leapfrog=n_leapfrog))
        assert nuts_cost < hmc_cost / 2
        if n_leapfrog == 20:
            assert nuts_batch_cost < hmc_cost


def test_nuts_one_doubling_is_a_one_step_trajectory_with_the_documented_choice():
    # With max_tree_depth=1 the trajectory is {x0, x1}, x1 one leapfrog step forwards or backwards (a fair coin), and
    # the step keeps x1 with probability min(1, exp(H0 - H1)). Replay the generator's draws in order:
    # momentum, direction, the subtree's pick (always its only point), the choice between the old tree and the new.
    model = CorrelatedGaussian(torch.zeros(2), torch.diag(torch.tensor([0.5, 2.0])))
    x0, eps = torch.tensor([[1.0, -1.0], [0.5, 2.0], [-2.0, 0.3], [0.0, 0.0]]), 0.9
    state, info = NUTS(step_size=eps, max_tree_depth=1).step(model, ChainState(x0),
                                                             generator=torch.Generator().manual_seed(0))
    replay = torch.Generator().manual_seed(0)
    p0 = torch.randn(4, 2, generator=replay)
    direction = torch.where(torch.rand(4, generator=replay) < 0.5, 1.0, -1.0).view(-1, 1)
    torch.rand(4, generator=replay)  # the subtree's pick
    u = torch.rand(4, generator=replay)

    def grad(x):
        return x @ model.precision

    p = p0 - 0.5 * eps * direction * grad(x0)
    x1 = x0 + eps * direction * p
    p1 = p - 0.5 * eps * direction * grad(x1)
    energy_error = model(x1) + 0.5 * p1.pow(2).sum(1) - model(x0) - 0.5 * p0.pow(2).sum(1)
    keep = u < (-energy_error).clamp(max=0).exp()
    torch.testing.assert_close(state.position, torch.where(keep.view(-1, 1), x1, x0))
    torch.testing.assert_close(info.acceptance_rate, (-energy_error).clamp(max=0).exp())
    assert isinstance(info, NUTSInfo)
    assert info.n_leapfrog.tolist() == [1, 1, 1, 1] and info.tree_depth.tolist() == [1, 1, 1, 1]
    # the state carries the kept point's energy and gradient for the next step
    torch.testing.assert_close(state.energy, model(state.position))
    torch.testing.assert_close(state.grad, grad(state.position))


def test_nuts_masking_is_exact_and_early_exit_only_saves_work():
    # Chains that have stopped are untouched by the doublings that others still build: running every doubling
    # (early_exit=False) gives the same step as stopping when all are done.
    model, _, _ = ill_conditioned_gaussian(4)
    x0 = torch.randn(64, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    early, early_info = NUTS(step_size=1.0, max_tree_depth=8).step(model, ChainState(x0),
                                                                    generator=torch.Generator().manual_seed(0))
    full, full_info = NUTS(step_size=1.0, max_tree_depth=8, early_exit=False).step(
        model, ChainState(x0), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(early.position, full.position)
    assert isinstance(early_info, NUTSInfo) and isinstance(full_info, NUTSInfo)
    assert torch.equal(early_info.n_leapfrog, full_info.n_leapfrog)
    assert torch.equal(early_info.tree_depth, full_info.tree_depth)
    assert int(full_info.n_batch_leapfrog) == 2**8 - 1
    assert int(early_info.n_leapfrog.max()) <= int(early_info.n_batch_leapfrog) < 2**8 - 1
    # trajectories differ in length from chain to chain: the tree depth adapts per chain
    assert len(set(early_info.tree_depth.tolist())) > 1


def test_nuts_stops_at_a_divergence_and_stays_put():
    class Cliff(EnergyModel):  # a quadratic bowl whose energy jumps by 1e4 beyond x_0 = 1.5
        def energy(self, x, y=None):
            return 0.5 * x.pow(2).sum(1) + 1e4 * torch.sigmoid(50 * (x[:, 0] - 1.5))

    x0 = torch.tensor([[1.4, 0.0]]).repeat(32, 1)
    state, info = NUTS(step_size=0.5).step(Cliff(), ChainState(x0), generator=torch.Generator().manual_seed(0))
    assert isinstance(info, NUTSInfo)
    assert bool(info.diverging.any())
    assert bool((state.position[:, 0] < 1.5).all()), "a divergent point must never be the next state"


def test_nuts_reads_no_values_without_early_exit_and_one_per_doubling_with_it():
    from tests.test_host_sync import no_host_sync

    model, x0 = CorrelatedGaussian(torch.zeros(2), torch.eye(2)), torch.randn(8, 2)
    with no_host_sync():
        NUTS(step_size=0.5, max_tree_depth=4, early_exit=False).step(model, ChainState(x0),
                                                                       generator=torch.Generator().manual_seed(0))
    reads = []
    original = torch.Tensor.__bool__

    def counting(tensor):
        reads.append(1)
        return original(tensor)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.Tensor, "__bool__", counting)
        _, info = NUTS(step_size=0.5, max_tree_depth=4).step(model, ChainState(x0),
                                                             generator=torch.Generator().manual_seed(0))
    assert isinstance(info, NUTSInfo)
    assert 1 <= len(reads) <= int(info.tree_depth.max()) <= 4


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: NUTS(step_size=0.0), ValueError, "step_size"),
        (lambda: NUTS(step_size=0.1, max_tree_depth=0), ValueError, "max_tree_depth"),
        (lambda: NUTS(step_size=0.1, max_energy_error=-1.0), ValueError, "max_energy_error"),
        (lambda: NUTS(step_size=0.1, early_exit=1), TypeError, "early_exit must be True or False"),
        (lambda: NUTS(step_size=0.1, precision="bf16"), ValueError, "supports precision"),
    ],
)
def test_nuts_bad_configuration_is_a_clear_error(make, error, message):
    with pytest.raises(error, match=message):
        make()


# --------------------------------------------------------------------------------------- configuration
def test_settings_show_in_repr_and_configuration():
    assert "friction=0.5" in repr(UnderdampedLangevin(step_size=0.1, friction=0.5))
    text = repr(AnnealedLangevin(step_size=0.1, noise_levels=[2.0, 1.0], steps_per_level=3))
    assert "levels=(2.0, 1.0)" in text and "noise_conditional=True" in text and "n_steps=6" in text
    configuration = dict(ParallelTempering(MALA(step_size=0.2), [1.0, 4.0]).configuration())
    assert configuration["temperatures"] == (1.0, 4.0)
    assert configuration["base_configuration"] == ("MALA", MALA(step_size=0.2).configuration())
    hash(tuple(configuration.items()))  # a CUDA-graph cache key must be hashable
