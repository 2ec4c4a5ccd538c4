"""Metropolis-adjusted Langevin algorithm (MALA)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from .._checks import check_positive
from .base import ChainState, FastPaths, Sampler, StepInfo, per_chain_norm, standard_normal
from .metropolis import metropolis_accept


class MALA(Sampler):
    r"""Metropolis-adjusted Langevin: a Langevin proposal corrected to be exact.

    Proposal and acceptance, with :math:`\eta` = ``step_size``:

    .. math::

        x' = x - \eta \nabla E(x) + \sqrt{2\eta}\,\xi, \qquad
        \log q(x' \mid x) = -\frac{\lVert x' - x + \eta \nabla E(x)\rVert^2}{4\eta},

    .. math::

        \alpha = \min\Big(1, \exp\big(E(x) - E(x') + \log q(x \mid x') - \log q(x' \mid x)\big)\Big).

    The chain keeps :math:`x'` with probability :math:`\alpha`
    (:func:`~ebmlib.samplers.metropolis_accept`), so :math:`e^{-E}`
    is its stationary law for every step size. One step costs one
    energy-and-gradient evaluation (the accepted point's is reused).

    Parameters
    ----------
    step_size : float
        :math:`\eta > 0`, finite.
    n_steps : int
        Default number of steps for :meth:`sample`.
    precision, compile_gradient, cuda_graph, check_finite
        Keyword-only: the fast paths and the finiteness check of
        :class:`~ebmlib.samplers.Sampler`. ``precision`` only ``"full"``: the
        accept/reject test compares energies, which bfloat16 rounds to 3 digits.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import NetworkEnergy
    >>> model = NetworkEnergy(torch.nn.Linear(2, 1))
    >>> x, diag = MALA(step_size=0.1, n_steps=5).sample(
    ...     model, torch.zeros(4, 2), generator=torch.Generator().manual_seed(0),
    ...     return_diagnostics=True)
    >>> diag["acceptance_rate"].shape
    torch.Size([5])
    """

    settings = ("step_size", "n_steps")
    precisions = ("full",)

    def __init__(
        self,
        step_size: float,
        n_steps: int = 20,
        **fast_paths: Unpack[FastPaths],
    ) -> None:
        super().__init__(n_steps, **fast_paths)
        self.step_size = check_positive(step_size, "step_size")

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        x = state.position
        energy, grad = self.energy_and_grad_at(model, state, y)
        eta = self.step_size
        proposal = x - eta * grad + (2.0 * eta) ** 0.5 * standard_normal(x, generator)
        proposal_energy, proposal_grad = self.energy_and_grad(model, proposal, y)
        log_q_forward = -(proposal - x + eta * grad).flatten(1).pow(2).sum(1) / (4 * eta)
        log_q_backward = -(x - proposal + eta * proposal_grad).flatten(1).pow(2).sum(1) / (4 * eta)
        log_ratio = energy - proposal_energy + log_q_backward - log_q_forward
        new_state, acceptance = metropolis_accept(
            ChainState(x, energy, grad), ChainState(proposal, proposal_energy, proposal_grad), log_ratio, generator
        )
        return new_state, StepInfo(energy, per_chain_norm(grad), acceptance)
