"""The Metropolis-Hastings accept/reject test shared by MALA and HMC (and by any sampler with such a test)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import ChainState, per_chain


def select(accept: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Per-chain choice: ``new[i]`` where ``accept[i]`` else ``old[i]``.

    Parameters
    ----------
    accept : Tensor of bool, shape ``(B,)``
    new, old : Tensor, shape ``(B, ...)``

    Returns
    -------
    Tensor, shape ``(B, ...)``

    Examples
    --------
    >>> import torch
    >>> select(torch.tensor([True, False]), torch.ones(2, 3), torch.zeros(2, 3)).sum(1)
    tensor([3., 0.])
    """
    return torch.where(per_chain(accept, new), new, old)


def metropolis_test(log_ratio: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    r"""Accept each entry with probability :math:`\alpha = \min(1, e^{\log r})`.

    One uniform draw per entry decides, :math:`u < \alpha`. A NaN ratio (from a
    non-finite energy) counts as :math:`\alpha = 0`, a rejection.

    Parameters
    ----------
    log_ratio : Tensor, any shape
        Log Metropolis-Hastings ratios :math:`\log r`.
    generator : torch.Generator, optional
        Source of the uniform draws; on ``log_ratio``'s device.

    Returns
    -------
    accept : Tensor of bool, shape of ``log_ratio``
    acceptance : Tensor, shape of ``log_ratio``
        :math:`\alpha` (the expected acceptance, a smoother diagnostic than the outcome).

    Examples
    --------
    >>> import torch
    >>> accept, acceptance = metropolis_test(torch.tensor([0.0, -float("inf"), float("nan")]))
    >>> accept, acceptance
    (tensor([ True, False, False]), tensor([1., 0., 0.]))
    """
    acceptance = log_ratio.clamp(max=0.0).exp().nan_to_num(0.0)
    uniform = torch.rand(log_ratio.shape, generator=generator, device=log_ratio.device, dtype=log_ratio.dtype)
    return uniform < acceptance, acceptance


def metropolis_accept(
    current: ChainState, proposal: ChainState, log_ratio: Tensor, generator: torch.Generator | None = None
) -> tuple[ChainState, Tensor]:
    r"""Keep each chain's proposal with probability :math:`\alpha = \min(1, e^{\log r})`, else its current state.

    ``log_ratio`` is the log Metropolis-Hastings ratio of each chain,
    :math:`\log r = \log \pi(x') + \log q(x \mid x') - \log \pi(x) - \log q(x' \mid x)`.
    A NaN ratio (a non-finite energy at the proposal) counts as :math:`\alpha = 0`:
    the proposal is rejected. One uniform draw per chain decides, :math:`u < \alpha`
    (:func:`metropolis_test`).

    Parameters
    ----------
    current, proposal : ChainState
        Positions ``(B, *event_shape)`` with their energies ``(B,)`` and gradients;
        the chosen chain keeps the position, energy and gradient of the same state.
    log_ratio : Tensor, shape ``(B,)``
    generator : torch.Generator, optional
        Source of the uniform draws; on the chains' device.

    Returns
    -------
    state : ChainState
        The accepted proposals and the kept current states, chain by chain.
    acceptance : Tensor, shape ``(B,)``
        :math:`\alpha` of each chain (the expected acceptance, a smoother diagnostic than the outcome).

    Examples
    --------
    >>> import torch
    >>> here = ChainState(torch.zeros(2, 1), torch.zeros(2), torch.zeros(2, 1))
    >>> there = ChainState(torch.ones(2, 1), torch.ones(2), torch.ones(2, 1))
    >>> state, acceptance = metropolis_accept(here, there, torch.tensor([0.0, -float("inf")]))
    >>> state.position[:, 0], acceptance
    (tensor([1., 0.]), tensor([1., 0.]))
    """
    if current.energy is None or current.grad is None or proposal.energy is None or proposal.grad is None:
        raise ValueError("metropolis_accept needs the energy and gradient of both the current and the proposed state")
    accept, acceptance = metropolis_test(log_ratio, generator)
    state = ChainState(
        select(accept, proposal.position, current.position),
        select(accept, proposal.energy, current.energy),
        select(accept, proposal.grad, current.grad),
    )
    return state, acceptance
