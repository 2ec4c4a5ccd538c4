"""Hamiltonian Monte Carlo with a leapfrog integrator."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from .._checks import check_count, check_positive
from .base import ChainState, FastPaths, Sampler, StepInfo, per_chain_norm, standard_normal
from .metropolis import metropolis_accept


def kinetic_energy(momentum: Tensor) -> Tensor:
    """:math:`\\tfrac12 \\lVert p\\rVert^2` per chain (unit mass), shape ``(B,)``, for momenta ``(B, *event_shape)``.

    Examples
    --------
    >>> import torch
    >>> kinetic_energy(torch.tensor([[1.0, 2.0], [0.0, 2.0]]))
    tensor([2.5000, 2.0000])
    """
    return 0.5 * momentum.flatten(1).pow(2).sum(1)


class HMC(Sampler):
    r"""Hamiltonian Monte Carlo with unit mass and a Metropolis test.

    Each step draws a momentum :math:`p \sim \mathcal{N}(0, I)`, integrates
    :math:`H(x, p) = E(x) + \tfrac12 \lVert p\rVert^2` with ``n_leapfrog``
    leapfrog steps of size :math:`\epsilon`,

    .. math::

        p \leftarrow p - \tfrac{\epsilon}{2}\nabla E(x), \quad
        x \leftarrow x + \epsilon p, \quad
        p \leftarrow p - \tfrac{\epsilon}{2}\nabla E(x),

    and keeps the end point with probability
    :math:`\min(1, \exp(H(x_0, p_0) - H(x_L, p_L)))`
    (:func:`~ebmlib.samplers.metropolis_accept`). One step costs
    ``n_leapfrog`` energy-and-gradient evaluations.

    Parameters
    ----------
    step_size : float
        Leapfrog step :math:`\epsilon > 0`, finite.
    n_leapfrog : int
        Leapfrog steps per HMC step, ``>= 1``.
    n_steps : int
        Default number of HMC steps for :meth:`sample`.
    precision, compile_gradient, cuda_graph, check_finite
        Keyword-only: the fast paths and the finiteness check of
        :class:`~ebmlib.samplers.Sampler`. ``precision`` only ``"full"``: the
        accept/reject test compares energies, which bfloat16 rounds to 3 digits.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import NetworkEnergy
    >>> model = NetworkEnergy(torch.nn.Linear(2, 1))
    >>> HMC(step_size=0.1, n_leapfrog=3, n_steps=2).sample(
    ...     model, torch.zeros(4, 2), generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 2])
    """

    settings = ("step_size", "n_leapfrog", "n_steps")
    precisions = ("full",)

    def __init__(
        self,
        step_size: float,
        n_leapfrog: int = 5,
        n_steps: int = 20,
        **fast_paths: Unpack[FastPaths],
    ) -> None:
        super().__init__(n_steps, **fast_paths)
        self.step_size = check_positive(step_size, "step_size")
        self.n_leapfrog = check_count(n_leapfrog, "n_leapfrog")

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        x0 = state.position
        energy0, grad0 = self.energy_and_grad_at(model, state, y)
        eps = self.step_size
        p0 = standard_normal(x0, generator)
        x, p, energy, grad = x0, p0 - 0.5 * eps * grad0, energy0, grad0
        for i in range(self.n_leapfrog):
            x = x + eps * p
            energy, grad = self.energy_and_grad(model, x, y)
            p = p - (eps if i < self.n_leapfrog - 1 else 0.5 * eps) * grad
        log_ratio = energy0 + kinetic_energy(p0) - energy - kinetic_energy(p)
        new_state, acceptance = metropolis_accept(
            ChainState(x0, energy0, grad0), ChainState(x, energy, grad), log_ratio, generator
        )
        return new_state, StepInfo(energy0, per_chain_norm(grad0), acceptance)
