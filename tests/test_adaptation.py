"""The warm-up of HMC and NUTS (ebmlib.samplers.adaptation): dual averaging, the windowed mass matrix, and what
they buy on an ill-conditioned Gaussian.

Every statistical test uses fixed seeds and states its tolerance and the figure it measured. The main target is a
10-D Gaussian N(0, diag(v)) with variances v log-spaced over three decades, 1 to 1000 (condition number 1000,
standard deviations 1 to 31.6); one warm-up of NUTS on it (128 chains, 75 iterations, the default windows) is
shared by the tests that read it. NUTS runs there with ``max_tree_depth=8`` (at most 255 leapfrog steps; unit-mass
trajectories need about 100) to keep the test cheap, adapted and unadapted alike.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from ebmlib.evaluation.mcmc_diagnostics import effective_sample_size
from ebmlib.samplers import (
    HMC,
    NUTS,
    AdaptableSampler,
    ChainState,
    DualAveraging,
    Langevin,
    NUTSInfo,
    WarmupState,
    WelfordState,
    WindowedAdaptation,
    adaptation_windows,
)
from tests.energies import GaussianEnergy, gaussian_2d

DIMENSION = 10
VARIANCES = torch.logspace(0, 3, DIMENSION, dtype=torch.float64)
N_CHAINS, N_WARMUP, N_DRAWS, MAX_TREE_DEPTH = 128, 75, 30, 8


def ill_conditioned() -> GaussianEnergy:
    return GaussianEnergy(torch.zeros(DIMENSION, dtype=torch.float64), VARIANCES)


def run(sampler, model, state: ChainState, n_draws: int, generator: torch.Generator):
    """Draws ``(chains, n_draws, D)``, the mean acceptance statistic, and the gradient evaluations: summed over
    chains (each chain's leapfrog steps) and what the batch evaluated (its longest trajectory, times the chains)."""
    draws, acceptance, per_chain, batch = [], [], 0, 0
    for _ in range(n_draws):
        state, info = sampler.step(model, state, generator=generator)
        draws.append(state.position)
        acceptance.append(info.acceptance_rate.mean())
        assert isinstance(info, NUTSInfo)
        per_chain += int(info.n_leapfrog.sum())
        batch += int(info.n_batch_leapfrog) * state.position.shape[0]
    return torch.stack(draws, dim=1), float(torch.stack(acceptance).mean()), per_chain, batch


@pytest.fixture(scope="module")
def warmed_up():
    """NUTS from step size 1 and unit mass, warmed up; then 30 draws of the tuned sampler and 30 of NUTS with
    step size 1 and unit mass (unadapted), both from the chains where the warm-up left them."""
    model = ill_conditioned()
    x0 = torch.randn(N_CHAINS, DIMENSION, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    nuts = NUTS(step_size=1.0, max_tree_depth=MAX_TREE_DEPTH)
    result = WindowedAdaptation(n_warmup=N_WARMUP).run(nuts, model, x0, generator=generator)
    adapted = run(result.sampler, model, result.state, N_DRAWS, generator)
    unadapted = run(nuts, model, result.state, N_DRAWS, generator)
    return result, adapted, unadapted


# ------------------------------------------------------------------------------------------------ schedule
def test_windows_are_stans_for_1000_iterations_and_scale_to_shorter_warmups():
    stan = ((75, 100), (100, 150), (150, 250), (250, 450), (450, 950))  # Stan's default: 75 / 25 doubling / 50
    assert adaptation_windows(1000) == stan
    assert WindowedAdaptation(n_warmup=1000).windows == stan
    assert adaptation_windows(100) == ((15, 90),)  # buffers overflowing the warm-up: Stan's 15% / 75% / 10%
    assert adaptation_windows(19) == ()  # as in Stan, no mass matrix under 20 iterations
    # scaled: initial buffer 7.5% and first window 2.5% of the warm-up, terminal buffer min(50, n_warmup // 4)
    assert WindowedAdaptation(n_warmup=100).windows == ((8, 10), (10, 14), (14, 22), (22, 38), (38, 75))
    assert WindowedAdaptation(n_warmup=100, adapt_mass=False).windows == ()
    for n_warmup in (20, 57, 100, 333, 1000, 4000):
        windows = WindowedAdaptation(n_warmup=n_warmup).windows
        starts, ends = [start for start, _ in windows], [end for _, end in windows]
        assert starts[1:] == ends[:-1] and all(start < end for start, end in windows)  # contiguous, non-empty
        assert ends[-1] == n_warmup - min(50, n_warmup // 4)


# ---------------------------------------------------------------------------------------------- dual averaging
def test_dual_averaging_converges_to_the_step_size_of_the_target_acceptance():
    # Two independent step sizes in one state of shape (2,), each seeing a known acceptance curve plus noise
    # (sd 0.05, fixed seed): exp(-eps), at target 0.8 for eps* = -log 0.8 = 0.2231, and exp(-(eps/3)^2), for
    # eps* = 3 sqrt(-log 0.8) = 1.4171. After 1000 updates the averaged step sizes are within 8% of eps*
    # (measured: 0.2285 and 1.4121, errors 2.4% and 0.4%; seeds 1 to 5: at most 4.3%). The average lags by
    # O(1/sqrt(t)): x_t = mu - sqrt(t) H_t / gamma keeps the mean error H_t at gamma (mu - x_t) / sqrt(t).
    tuning, noise = DualAveraging(), torch.Generator().manual_seed(0)
    state = tuning.init(torch.tensor([1.0, 0.1], dtype=torch.float64))
    for _ in range(1000):
        eps = tuning.step_size(state)
        curve = torch.stack([(-eps[0]).exp(), (-(eps[1] / 3) ** 2).exp()])
        state = tuning.update(state, curve + 0.05 * torch.randn(2, generator=noise, dtype=torch.float64))
    exact = torch.tensor([-math.log(0.8), 3 * math.sqrt(-math.log(0.8))], dtype=torch.float64)
    torch.testing.assert_close(tuning.final_step_size(state), exact, rtol=0.08, atol=0)


def test_dual_averaging_follows_hoffman_and_gelmans_formulas_from_10_eps0():
    tuning = DualAveraging(target_acceptance=0.8, gamma=0.05, t0=10.0, kappa=0.75)
    state = tuning.init(torch.tensor(0.5))
    torch.testing.assert_close(state.shrink_towards, torch.tensor(math.log(5.0)))
    state = tuning.update(state, torch.tensor(0.3))
    mean_error = 0.5 / 11  # (1 - 1/11) * 0 + (0.8 - 0.3) / 11
    torch.testing.assert_close(state.mean_error, torch.tensor(mean_error))
    torch.testing.assert_close(state.log_step_size, torch.tensor(math.log(5.0) - 1 / 0.05 * mean_error))
    torch.testing.assert_close(state.log_step_size_average, state.log_step_size)  # weight 1^-0.75 = 1
    restarted = tuning.restart(state)
    torch.testing.assert_close(restarted.shrink_towards, state.log_step_size + math.log(10.0))
    assert float(restarted.n_updates) == 0.0 and float(restarted.mean_error) == 0.0


def test_step_size_alone_reaches_the_target_acceptance_on_a_simple_gaussian():
    # Dual averaging alone (adapt_mass=False) on a 5-D standard Gaussian, with HMC of one leapfrog step (whose
    # acceptance falls smoothly with the step size; with several steps it need not be monotone on a Gaussian),
    # 256 chains, 200 warm-up iterations from step size 2, for targets 0.8 and 0.6. The tuned sampler's mean
    # acceptance over 20 further steps (5120 chain steps: standard error about 0.005) is within 0.03 of the target
    # (measured: 0.797 and 0.603), and the lower target has the larger step (measured: 0.99 and 1.26).
    model, x0 = GaussianEnergy(torch.zeros(5), torch.ones(5)), torch.zeros(256, 5)
    step_sizes = []
    for target in (0.8, 0.6):
        generator = torch.Generator().manual_seed(0)
        warmup = WindowedAdaptation(n_warmup=200, target_acceptance=target, adapt_mass=False)
        result = warmup.run(HMC(step_size=2.0, n_leapfrog=1), model, x0, generator=generator)
        assert isinstance(result.sampler, HMC) and result.sampler.inverse_mass is None  # the mass is left alone
        _, diagnostics = result.sampler.sample(model, result.state.position, n_steps=20, generator=generator,
                                               return_diagnostics=True)
        acceptance = float(diagnostics["acceptance_rate"].mean())
        assert abs(acceptance - target) < 0.03, (target, acceptance)
        step_sizes.append(result.sampler.step_size)
    assert step_sizes[0] < step_sizes[1], step_sizes


# ------------------------------------------------------------------------------------------------ mass matrix
def test_welford_merges_batches_exactly_and_regularises_as_stan():
    draws = torch.randn(300, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 1
    state = WelfordState.empty(4, dtype=torch.float64)
    for batch in draws.split([1, 7, 92, 200]):
        state = state.update(batch)
    assert float(state.n_draws) == 300
    torch.testing.assert_close(state.mean, draws.mean(0))
    torch.testing.assert_close(state.variance(), draws.var(0))
    n = 300
    torch.testing.assert_close(state.regularized_variance(), n / (n + 5) * draws.var(0) + 1e-3 * 5 / (n + 5))


def test_the_mass_matrix_recovers_the_variances(warmed_up):
    # The windows are (6, 8), (8, 12), (12, 20), (20, 57). The last (37 x 128 = 4736 draws) estimates each variance
    # with a relative standard error of about sqrt(2 / 4736) = 2% for independent draws; tolerance 20% (measured:
    # worst 4.3%).
    result, _, _ = warmed_up
    assert isinstance(result.sampler, NUTS) and result.sampler.step_size != 1.0  # a new sampler, tuned
    ratio = torch.tensor(result.sampler.inverse_mass, dtype=torch.float64) / VARIANCES
    assert float((ratio - 1).abs().max()) < 0.2, ratio


# ---------------------------------------------------------------------------------------------- adapted NUTS
def test_adapted_nuts_accepts_at_the_target_and_samples_the_target(warmed_up):
    # Mean acceptance statistic of the tuned NUTS over 30 draws x 128 chains, within 0.05 of 0.8 (measured 0.798;
    # the step size found: 0.897). Its draws have the target's variances: tolerance 15%, about 6 standard errors
    # of a variance from 3840 independent draws (measured: worst 6.3%).
    result, (draws, acceptance, _, _), _ = warmed_up
    assert abs(acceptance - 0.8) < 0.05, acceptance
    ratio = draws.flatten(0, 1).var(0) / VARIANCES
    assert float((ratio - 1).abs().max()) < 0.15, ratio


def test_adapted_nuts_gives_at_least_3x_the_effective_samples_per_gradient(warmed_up):
    # ESS: ebmlib's per-chain effective_sample_size, summed over the 128 chains, of each coordinate; the figure is
    # the worst coordinate. Gradients: leapfrog steps, summed over chains (NUTSInfo.n_leapfrog). Unadapted: NUTS
    # with step size 1 (where the warm-up started) and unit mass, from the same chains.
    # Measured: adapted ESS 4266 for 28280 gradients (0.151 per gradient), unadapted ESS 1562 for 229444
    # (0.0068): ratio 22.2. Counting what the batch evaluated instead (its longest trajectory, times 128: 119040
    # and 602368 gradients), the ratio is 13.8.
    _, (adapted_draws, _, adapted_cost, adapted_batch), (unadapted_draws, _, unadapted_cost, unadapted_batch) = (
        warmed_up)
    adapted_ess = float(effective_sample_size(adapted_draws).sum(0).min())
    unadapted_ess = float(effective_sample_size(unadapted_draws).sum(0).min())
    ratio = (adapted_ess / adapted_cost) / (unadapted_ess / unadapted_cost)
    batch_ratio = (adapted_ess / adapted_batch) / (unadapted_ess / unadapted_batch)
    assert ratio >= 3, (adapted_ess, adapted_cost, unadapted_ess, unadapted_cost, ratio, batch_ratio)


def test_hmc_with_adaptation_reaches_the_target_acceptance():
    # HMC (8 leapfrog steps) on the ill-conditioned Gaussian, 128 chains, 100 warm-up iterations from step size 1
    # and unit mass. Tuned mean acceptance over 20 further steps within 0.05 of 0.8 (measured 0.815, at step size
    # 0.855), and the mass within 30% of the variances (HMC's fixed-length draws are more correlated than NUTS's;
    # measured: worst 11.8%).
    model = ill_conditioned()
    x0 = torch.randn(N_CHAINS, DIMENSION, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    result = WindowedAdaptation(n_warmup=100).run(HMC(step_size=1.0, n_leapfrog=8), model, x0, generator=generator)
    _, diagnostics = result.sampler.sample(model, result.state.position, n_steps=20, generator=generator,
                                           return_diagnostics=True)
    assert abs(float(diagnostics["acceptance_rate"].mean()) - 0.8) < 0.05, diagnostics["acceptance_rate"]
    ratio = torch.tensor(result.sampler.inverse_mass, dtype=torch.float64) / VARIANCES
    assert float((ratio - 1).abs().max()) < 0.3, ratio


# ------------------------------------------------------------------------------------ the samplers' new options
@pytest.mark.parametrize("make", [lambda **kw: NUTS(step_size=0.7, **kw), lambda **kw: HMC(step_size=0.3, **kw)],
                         ids=["nuts", "hmc"])
def test_a_unit_inverse_mass_draws_exactly_what_the_default_draws(make):
    model, x0 = gaussian_2d(), torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    default = make().sample(model, x0, n_steps=5, generator=torch.Generator().manual_seed(1))
    unit = make(inverse_mass=(1.0, 1.0)).sample(model, x0, n_steps=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(default, unit)


@pytest.mark.parametrize("make", [lambda **kw: NUTS(**kw), lambda **kw: HMC(**kw)], ids=["nuts", "hmc"])
def test_transition_with_given_settings_is_the_step_of_the_sampler_so_configured(make):
    model, x0 = gaussian_2d(), torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    sampler = make(step_size=0.5)
    state, _ = sampler.transition(model, ChainState(x0), generator=torch.Generator().manual_seed(1),
                                  step_size=torch.tensor(0.25), inverse_mass=torch.tensor([0.5, 2.0]))
    tuned = sampler.tuned(0.25, [0.5, 2.0])
    expected, _ = tuned.step(model, ChainState(x0), generator=torch.Generator().manual_seed(1))
    assert type(tuned) is type(sampler) and tuned.inverse_mass == (0.5, 2.0)
    assert torch.equal(state.position, expected.position)


@pytest.mark.parametrize("make", [lambda m: NUTS(step_size=0.7, inverse_mass=m),
                                  lambda m: HMC(step_size=0.8, n_leapfrog=2, inverse_mass=m)], ids=["nuts", "hmc"])
def test_samplers_with_an_inverse_mass_sample_their_target(make):
    # N((1, -2), diag(1, 100)) with inverse_mass = its variances: 1024 chains, 40 steps from the origin. The final
    # positions' means within 0.15 standard deviations and variances within 15% (1024 draws: standard errors 0.03
    # and 4.4%; measured: worst 0.038 and 3.8% (NUTS), 0.040 and 6.1% (HMC); HMC with unit mass and the same
    # settings fails, 0.10 and 35%: from the origin it has not reached the wide coordinate's spread).
    variances = torch.tensor([1.0, 100.0], dtype=torch.float64)
    mean = torch.tensor([1.0, -2.0], dtype=torch.float64)
    model = GaussianEnergy(mean, variances)
    x = make(variances).sample(model, torch.zeros(1024, 2, dtype=torch.float64), n_steps=40,
                               generator=torch.Generator().manual_seed(0))
    mean_error = ((x.mean(0) - mean) / variances.sqrt()).abs().max()
    variance_error = (x.var(0) / variances - 1).abs().max()
    assert float(mean_error) < 0.15 and float(variance_error) < 0.15, (mean_error, variance_error)


@pytest.mark.parametrize(
    "inverse_mass, error, message",
    [
        ([1.0, -1.0], ValueError, r"inverse_mass must be a non-empty sequence of finite positive numbers, "
                                  r"got \[1\.0, -1\.0\]"),
        ([float("nan")], ValueError, r"inverse_mass must be .*got \[nan\]"),
        ([], ValueError, "inverse_mass must be a non-empty"),
        (torch.tensor([[1.0, 0.0]]), ValueError, "finite positive"),
        ([1.0, True], TypeError, "inverse_mass must hold real numbers"),
        ("11", TypeError, "inverse_mass must be a tensor or a sequence of positive numbers"),
    ],
)
@pytest.mark.parametrize("cls", [NUTS, HMC])
def test_bad_inverse_mass_is_a_clear_error(cls, inverse_mass, error, message):
    with pytest.raises(error, match=message):
        cls(step_size=0.1, inverse_mass=inverse_mass)


@pytest.mark.parametrize("cls", [NUTS, HMC])
def test_an_inverse_mass_of_the_wrong_size_or_a_step_size_of_the_wrong_shape_is_a_clear_error(cls):
    model = gaussian_2d()
    with pytest.raises(ValueError, match=r"inverse_mass must have one entry per coordinate of a chain, 2 for chains "
                                         r"of shape \(4, 2\), got 3"):
        cls(step_size=0.1, inverse_mass=[1.0, 2.0, 3.0]).sample(model, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"a tensor step_size must have shape \(\) or \(4,\) \(one per chain\), "
                                         r"got \(3,\)"):
        cls(step_size=0.1).transition(model, ChainState(torch.zeros(4, 2)), step_size=torch.ones(3))


def test_the_inverse_mass_is_a_declared_setting_and_follows_the_sampler():
    sampler = NUTS(step_size=0.1, inverse_mass=torch.tensor([1.0, 4.0]))
    assert ("inverse_mass", (1.0, 4.0)) in sampler.configuration() and "inverse_mass=(1.0, 4.0)" in repr(sampler)
    assert sampler.state_dict() == {}  # configuration, not state: nothing to load
    assert sampler.to(torch.float64) is sampler  # its tensor copy moves with the module (nn.Module.to)


# ------------------------------------------------------------------------------------------------- warm-up
def test_the_warmup_is_reproducible_and_its_state_can_be_saved_midway():
    # 30 iterations in one go, or 12, a round trip of the state through torch.save, and 18 more: the same tuned
    # sampler and chains, bit for bit.
    model, x0, sampler = gaussian_2d(), torch.zeros(32, 2), HMC(step_size=0.5, n_leapfrog=3)
    warmup = WindowedAdaptation(n_warmup=30)
    whole = warmup.run(sampler, model, x0, generator=torch.Generator().manual_seed(0))
    again = warmup.run(sampler, model, x0, generator=torch.Generator().manual_seed(0))
    assert whole.sampler.configuration() == again.sampler.configuration()

    generator = torch.Generator().manual_seed(0)
    state = warmup.init(sampler, x0)
    for _ in range(12):
        state, _ = warmup.step(sampler, model, state, generator=generator)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=False)
    assert isinstance(state, WarmupState) and state.iteration == 12
    for _ in range(18):
        state, _ = warmup.step(sampler, model, state, generator=generator)
    assert warmup.tuned_sampler(sampler, state).configuration() == whole.sampler.configuration()
    assert torch.equal(state.chains.position, whole.state.position)
    with pytest.raises(ValueError, match="the warm-up is over: it has run its 30 iterations"):
        warmup.step(sampler, model, state, generator=generator)


def test_warmup_diagnostics_and_a_mass_given_to_start_from():
    model, x0 = gaussian_2d(), torch.zeros(16, 2)
    sampler = NUTS(step_size=0.5, max_tree_depth=4, inverse_mass=[0.5, 2.0])
    warmup = WindowedAdaptation(n_warmup=25, adapt_mass=False)
    assert torch.equal(warmup.init(sampler, x0).inverse_mass, torch.tensor([0.5, 2.0]))
    result = warmup.run(sampler, model, x0, generator=torch.Generator().manual_seed(0))
    assert result.sampler.inverse_mass == (0.5, 2.0) and result.sampler.max_tree_depth == 4
    assert set(result.diagnostics) == {"step_size", "acceptance_rate"}
    assert all(value.shape == (25,) for value in result.diagnostics.values())
    assert float(result.diagnostics["step_size"][0]) == 0.5  # the first iteration runs at the sampler's step size


def test_a_warmup_iteration_reads_nothing_on_the_host():
    from tests.test_host_sync import no_host_sync

    model, x0 = gaussian_2d(), torch.zeros(8, 2)
    warmup = WindowedAdaptation(n_warmup=20)  # windows (2, 3), (3, 5), (5, 15): updates of the mass and restarts
    for sampler in (HMC(step_size=0.5, n_leapfrog=2), NUTS(step_size=0.5, max_tree_depth=3, early_exit=False)):
        state, generator = warmup.init(sampler, x0), torch.Generator().manual_seed(0)
        with no_host_sync():
            for _ in range(20):
                state, _ = warmup.step(sampler, model, state, generator=generator)


def test_samplers_without_a_tunable_step_size_and_mass_are_refused():
    assert isinstance(NUTS(step_size=0.1), AdaptableSampler) and not isinstance(Langevin(0.1), AdaptableSampler)
    with pytest.raises(TypeError, match=r"needs an ebmlib Sampler with `step_size`, `inverse_mass`, "
                                        r"`transition\(...\)` and `tuned\(...\)` \(HMC, NUTS\), got Langevin"):
        WindowedAdaptation(n_warmup=10).run(Langevin(step_size=0.1), gaussian_2d(), torch.zeros(4, 2))


def test_a_sampler_mass_of_the_wrong_size_for_the_chains_is_refused():
    with pytest.raises(ValueError, match=r"the sampler's inverse_mass has 3 entries, but chains of shape \(4, 2\) "
                                         r"have 2 coordinates"):
        WindowedAdaptation(n_warmup=10).init(HMC(step_size=0.1, inverse_mass=[1.0, 1.0, 1.0]), torch.zeros(4, 2))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(n_warmup=0), ValueError, "n_warmup must be a positive integer, got 0"),
        (dict(n_warmup=10.0), TypeError, r"n_warmup must be an integer >= 1, got 10\.0 \(float\)"),
        (dict(n_warmup=10, target_acceptance=1.0), ValueError, "target_acceptance must lie strictly between 0 and 1"),
        (dict(n_warmup=10, target_acceptance=1.5), ValueError, r"target_acceptance must lie in \[0, 1\], got 1\.5"),
        (dict(n_warmup=10, gamma=0.0), ValueError, "gamma must be positive, got 0.0"),
        (dict(n_warmup=10, t0=-1.0), ValueError, "t0 must be non-negative, got -1.0"),
        (dict(n_warmup=10, kappa=0.5), ValueError, r"kappa must lie in \(0\.5, 1\] for the average to converge"),
        (dict(n_warmup=10, adapt_mass="yes"), TypeError, r"adapt_mass must be True or False, got 'yes' \(str\)"),
        (dict(n_warmup=100, terminal_buffer=-1), ValueError, "terminal_buffer must be an integer >= 0, got -1"),
        (dict(n_warmup=100, base_window=0), ValueError, "base_window must be a positive integer, got 0"),
    ],
)
def test_bad_warmup_settings_are_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        WindowedAdaptation(**kwargs)
