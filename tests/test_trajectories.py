"""chain_trajectory: snapshots of a sampler's chains equal one long run, with the start first."""

from __future__ import annotations

import pytest
import torch

from ebmlib.evaluation import chain_trajectory
from ebmlib.samplers import HMC, MALA, Langevin
from tests.energies import gaussian_2d, tiny_classifier


def g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "sampler",
    [Langevin(step_size=0.05, clamp=(-3.0, 3.0)), MALA(step_size=0.05), HMC(step_size=0.1, n_leapfrog=3)],
    ids=["langevin", "mala", "hmc"],
)
def test_pieces_equal_one_long_run_with_the_same_generator(sampler):
    model = gaussian_2d()
    start = torch.randn(16, 2, generator=g(1))
    path = chain_trajectory(sampler, model, start, n_steps=10, record_every=3, generator=g(2))
    end = sampler.sample(model, start, n_steps=10, generator=g(2))
    assert path.shape == (5, 16, 2)  # steps 0, 3, 6, 9, 10
    assert torch.equal(path[0], start)
    torch.testing.assert_close(path[-1], end)
    # Every snapshot is the run stopped at that step.
    torch.testing.assert_close(path[2], sampler.sample(model, start, n_steps=6, generator=g(2)))


def test_class_conditional_chains_and_callback():
    model = tiny_classifier()
    start = torch.rand(6, 1, 4, 4, generator=g(0)) * 2 - 1
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    sampler = Langevin(step_size=1.0, noise_std=0.01, clamp=(-1.0, 1.0))
    seen = []
    path = chain_trajectory(sampler, model, start, 8, 4, y=y, generator=g(3),
                            callback=lambda done, x: seen.append((done, x.shape)))
    assert seen == [(4, (6, 1, 4, 4)), (8, (6, 1, 4, 4))]
    torch.testing.assert_close(path[-1], sampler.sample(model, start, n_steps=8, y=y, generator=g(3)))
    assert not torch.equal(path[-1], start)  # the chains moved
    assert all(p.grad is None for p in model.parameters())


def test_zero_steps_gives_only_the_start_and_bad_arguments_are_named():
    model = gaussian_2d()
    start = torch.zeros(3, 2)
    path = chain_trajectory(Langevin(step_size=0.1), model, start, n_steps=0, record_every=5)
    assert path.shape == (1, 3, 2) and torch.equal(path[0], start)
    with pytest.raises(ValueError, match="record_every"):
        chain_trajectory(Langevin(step_size=0.1), model, start, n_steps=5, record_every=0)
    with pytest.raises(ValueError, match="n_steps"):
        chain_trajectory(Langevin(step_size=0.1), model, start, n_steps=-1, record_every=1)
    with pytest.raises(ValueError, match="y must have shape"):
        chain_trajectory(Langevin(step_size=0.1), model, start, 2, 1, y=torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="start"):
        chain_trajectory(Langevin(step_size=0.1), model, torch.zeros(3, 2, dtype=torch.long), 2, 1)
