"""The shared Metropolis accept/reject test, and MALA and HMC steps written out by hand against it."""

from __future__ import annotations

import math

import pytest
import torch

from ebmlib.samplers import HMC, MALA, ChainState
from ebmlib.samplers.metropolis import metropolis_accept, select
from tests.energies import gaussian_2d


def states(n: int) -> tuple[ChainState, ChainState]:
    current = ChainState(torch.zeros(n, 2), torch.zeros(n), torch.zeros(n, 2))
    proposal = ChainState(torch.ones(n, 2), torch.ones(n), 2 * torch.ones(n, 2))
    return current, proposal


def test_certain_impossible_and_nan_ratios():
    current, proposal = states(4)
    log_ratio = torch.tensor([0.0, 5.0, -math.inf, math.nan])
    state, acceptance = metropolis_accept(current, proposal, log_ratio, torch.Generator().manual_seed(0))
    torch.testing.assert_close(acceptance, torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert torch.equal(state.position[:, 0], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    # each chain keeps the energy and gradient of the position it keeps
    assert torch.equal(state.energy, state.position[:, 0])
    assert torch.equal(state.grad, 2 * state.position)


def test_acceptance_frequency_is_the_acceptance_probability():
    # 20000 chains accepted with probability 0.3: the binomial standard error of the
    # fraction is sqrt(0.21 / 20000) = 0.0032; tolerance 0.015 is 4.6 standard errors.
    current, proposal = states(20_000)
    log_ratio = torch.full((20_000,), math.log(0.3))
    state, acceptance = metropolis_accept(current, proposal, log_ratio, torch.Generator().manual_seed(0))
    torch.testing.assert_close(acceptance, torch.full((20_000,), 0.3))
    assert abs(float(state.position[:, 0].mean()) - 0.3) < 0.015


def test_same_generator_same_decisions():
    current, proposal = states(64)
    log_ratio = torch.full((64,), math.log(0.5))
    a, _ = metropolis_accept(current, proposal, log_ratio, torch.Generator().manual_seed(7))
    b, _ = metropolis_accept(current, proposal, log_ratio, torch.Generator().manual_seed(7))
    c, _ = metropolis_accept(current, proposal, log_ratio, torch.Generator().manual_seed(8))
    assert torch.equal(a.position, b.position) and not torch.equal(a.position, c.position)


def test_a_state_without_energy_is_a_clear_error():
    current, proposal = states(2)
    with pytest.raises(ValueError, match="needs the energy and gradient"):
        metropolis_accept(ChainState(current.position), proposal, torch.zeros(2))


def test_select_picks_whole_chains():
    new, old = torch.ones(3, 2, 2), torch.zeros(3, 2, 2)
    picked = select(torch.tensor([True, False, True]), new, old)
    assert torch.equal(picked.flatten(1).sum(1), torch.tensor([4.0, 0.0, 4.0]))


def test_mala_step_is_the_documented_proposal_and_test():
    model, x = gaussian_2d(), torch.tensor([[0.0, 0.0], [2.0, -1.0], [1.0, 1.0]])
    eta = 0.3
    state, info = MALA(step_size=eta).step(model, ChainState(x), generator=torch.Generator().manual_seed(0))

    g = torch.Generator().manual_seed(0)  # the same draws, in the same order: noise, then uniforms
    noise, uniform = torch.randn(3, 2, generator=g), torch.rand(3, generator=g)

    def energy(z: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((z - torch.tensor([1.0, -2.0])) ** 2 / torch.tensor([0.5, 2.0])).sum(1)

    def grad(z: torch.Tensor) -> torch.Tensor:
        return (z - torch.tensor([1.0, -2.0])) / torch.tensor([0.5, 2.0])

    proposal = x - eta * grad(x) + math.sqrt(2 * eta) * noise
    log_q_forward = -(proposal - x + eta * grad(x)).pow(2).sum(1) / (4 * eta)
    log_q_backward = -(x - proposal + eta * grad(proposal)).pow(2).sum(1) / (4 * eta)
    alpha = (energy(x) - energy(proposal) + log_q_backward - log_q_forward).clamp(max=0).exp()
    expected = torch.where((uniform < alpha)[:, None], proposal, x)
    torch.testing.assert_close(info.acceptance_rate, alpha)
    torch.testing.assert_close(state.position, expected)
    torch.testing.assert_close(state.energy, energy(expected))


def test_hmc_step_is_leapfrog_and_the_documented_test():
    model, x = gaussian_2d(), torch.tensor([[0.0, 0.0], [2.0, -1.0], [1.0, 1.0]])
    eps, n_leapfrog = 0.4, 3
    state, info = HMC(step_size=eps, n_leapfrog=n_leapfrog).step(model, ChainState(x),
                                                                 generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    p0, uniform = torch.randn(3, 2, generator=g), torch.rand(3, generator=g)

    def grad(z: torch.Tensor) -> torch.Tensor:
        return (z - torch.tensor([1.0, -2.0])) / torch.tensor([0.5, 2.0])

    def hamiltonian(z: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((z - torch.tensor([1.0, -2.0])) ** 2 / torch.tensor([0.5, 2.0])).sum(1) + 0.5 * p.pow(2).sum(1)

    z, p = x.clone(), p0.clone()
    for _ in range(n_leapfrog):
        p = p - 0.5 * eps * grad(z)
        z = z + eps * p
        p = p - 0.5 * eps * grad(z)
    alpha = (hamiltonian(x, p0) - hamiltonian(z, p)).clamp(max=0).exp()
    torch.testing.assert_close(info.acceptance_rate, alpha)
    torch.testing.assert_close(state.position, torch.where((uniform < alpha)[:, None], z, x))
