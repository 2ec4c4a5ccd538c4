"""Discrete Metropolis-adjusted Langevin (DMALA; Zhang, Liu & Liu, 2022): every site moves at once, MH-corrected."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from .._checks import check_positive
from .base import ChainState, FastPaths, StepInfo
from .discrete import (
    DiscreteSampler,
    categories,
    first_order_changes,
    gumbel_argmax,
    metropolis_corrected,
    n_values,
    positions,
)


class DMALA(DiscreteSampler):
    r"""Discrete Metropolis-adjusted Langevin: a Langevin-like proposal that may change every site at once.

    Zhang, Liu & Liu (2022), "A Langevin-like sampler for discrete distributions". Like
    Langevin's Gaussian step, the proposal weighs a first-order estimate of the energy change
    against the distance moved, and it factorises over the sites, so every site is redrawn
    independently in one step. For site :math:`i`, currently :math:`c_i`, and each value
    :math:`k`, with :math:`\alpha` = ``step_size`` and :math:`\Delta_{ik}(x) = \nabla_{ik}E(x) -
    \nabla_{ic_i}E(x)` (bits: :math:`(1 - 2x_i)\,\partial_i E(x)` for the flip, the estimate of
    :class:`~ebmlib.samplers.GibbsWithGradients`),

    .. math::

        q_i(k \mid x) = \operatorname{softmax}_k\Big(-\tfrac12 \Delta_{ik}(x)
            - \tfrac{1}{2\alpha} \lVert x_i^{(k)} - x_i\rVert^2\Big),
        \qquad q(x' \mid x) = \prod_i q_i(x'_i \mid x),

    where :math:`\lVert x_i^{(k)} - x_i\rVert^2` is 1 for a flipped bit and 2 for another
    one-hot category (0 for no change). The proposal :math:`x'` is kept with probability
    (:func:`~ebmlib.samplers.metropolis_accept`)

    .. math::

        \min\Big(1, \exp\big(E(x) - E(x')\big)\,\frac{q(x \mid x')}{q(x' \mid x)}\Big),

    so :math:`e^{-E}` is stationary for every step size. Small :math:`\alpha` changes few sites
    (the expected number of flips of bits is :math:`\sum_i \sigma(-\Delta_i/2 - 1/(2\alpha))`) and
    is mostly accepted; large :math:`\alpha` changes many and is accepted less. One step costs
    one energy-and-gradient evaluation (the accepted point's is reused).

    Positions are bits in {0, 1}, every entry a site; or, with ``one_hot=True``, one-hot vectors
    over their last dimension, ``(B, *sites, K)``. :meth:`sample` refuses anything else.

    Parameters
    ----------
    step_size : float
        :math:`\alpha > 0`, finite.
    n_steps : int
        Default number of steps for :meth:`sample`.
    one_hot : bool
        Sites are one-hot vectors over the last dimension (categorical data) instead of bits.
    precision, compile_gradient, cuda_graph, check_finite
        Keyword-only: the fast paths and the finiteness check of :class:`~ebmlib.samplers.Sampler`.
        ``precision`` only ``"full"``: the accept/reject test compares energies.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import IsingEnergy
    >>> model = IsingEnergy(4, coupling=0.3)
    >>> x, diagnostics = DMALA(step_size=0.2, n_steps=10).sample(
    ...     model, torch.zeros(8, 4, 4), generator=torch.Generator().manual_seed(0), return_diagnostics=True)
    >>> x.shape, diagnostics["acceptance_rate"].shape, bool(((x == 0) | (x == 1)).all())
    (torch.Size([8, 4, 4]), torch.Size([10]), True)
    """

    settings = ("step_size", "n_steps", "one_hot")

    def __init__(
        self, step_size: float, n_steps: int = 20, one_hot: bool = False, **fast_paths: Unpack[FastPaths]
    ) -> None:
        super().__init__(n_steps, one_hot, **fast_paths)
        self.step_size = check_positive(step_size, "step_size")

    def site_log_probabilities(self, x: Tensor, grad: Tensor, c: Tensor) -> Tensor:
        """:math:`\\log q_i(k \\mid x)` of every site and value, ``(B, S, K)``: value ``(c_i + j) mod K`` at
        index ``j`` (0: no change)."""
        changes = first_order_changes(grad, x, c, self.one_hot)
        distance = 2.0 if self.one_hot else 1.0  # squared distance of a change of value
        stay = torch.zeros_like(changes[..., :1])
        return torch.cat([stay, -changes / 2 - distance / (2 * self.step_size)], -1).log_softmax(-1)

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        x = state.position
        energy, grad = self.energy_and_grad_at(model, state, y)
        c = categories(x, self.one_hot)
        k = n_values(x, self.one_hot)
        forward = self.site_log_probabilities(x, grad, c)
        offset = gumbel_argmax(forward, generator)  # (B, S)
        proposed = (c + offset) % k
        proposal = positions(proposed, x, self.one_hot)
        proposal_energy, proposal_grad = self.energy_and_grad(model, proposal, y)
        backward = self.site_log_probabilities(proposal, proposal_grad, proposed)
        log_q_forward = forward.gather(-1, offset[..., None]).flatten(1).sum(1)
        log_q_backward = backward.gather(-1, ((k - offset) % k)[..., None]).flatten(1).sum(1)
        return metropolis_corrected(x, energy, grad, proposal, proposal_energy, proposal_grad, log_q_forward,
                                    log_q_backward, generator)
