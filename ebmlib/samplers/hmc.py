"""Hamiltonian Monte Carlo with a leapfrog integrator."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._checks import check_positive
from .base import ChainState, Sampler, StepInfo, per_chain_norm
from .mala import select


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
    :math:`\min(1, \exp(H(x_0, p_0) - H(x_L, p_L)))`. One step costs
    ``n_leapfrog`` energy-and-gradient evaluations.

    Parameters
    ----------
    step_size : float
        Leapfrog step :math:`\epsilon > 0`.
    n_leapfrog : int
        Leapfrog steps per HMC step.
    n_steps : int
        Default number of HMC steps for :meth:`sample`.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import NetworkEnergy
    >>> model = NetworkEnergy(torch.nn.Linear(2, 1))
    >>> HMC(step_size=0.1, n_leapfrog=3, n_steps=2).sample(
    ...     model, torch.zeros(4, 2), generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 2])
    """

    def __init__(self, step_size: float, n_leapfrog: int = 5, n_steps: int = 20) -> None:
        super().__init__(n_steps)
        check_positive(step_size, "step_size")
        if n_leapfrog < 1:
            raise ValueError(f"n_leapfrog must be a positive integer, got {n_leapfrog}")
        self.step_size = step_size
        self.n_leapfrog = n_leapfrog

    def step(
        self,
        model: nn.Module,
        state: ChainState,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[ChainState, StepInfo]:
        x0 = state.position
        energy0, grad0 = self.energy_and_grad_at(model, state, y)
        eps = self.step_size
        p0 = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x, p, energy, grad = x0, p0 - 0.5 * eps * grad0, energy0, grad0
        for i in range(self.n_leapfrog):
            x = x + eps * p
            energy, grad = self.energy_and_grad(model, x, y)
            p = p - (eps if i < self.n_leapfrog - 1 else 0.5 * eps) * grad
        kinetic0 = 0.5 * p0.flatten(1).pow(2).sum(1)
        kinetic = 0.5 * p.flatten(1).pow(2).sum(1)
        log_alpha = energy0 + kinetic0 - energy - kinetic
        acceptance = log_alpha.clamp(max=0.0).exp().nan_to_num(0.0)
        uniform = torch.rand(energy0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        accept = uniform < acceptance
        new_state = ChainState(
            select(accept, x, x0), select(accept, energy, energy0), select(accept, grad, grad0)
        )
        return new_state, StepInfo(energy0, per_chain_norm(grad0), acceptance)

    def extra_repr(self) -> str:
        return f"step_size={self.step_size}, n_leapfrog={self.n_leapfrog}, n_steps={self.n_steps}"
