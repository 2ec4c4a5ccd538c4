"""Gibbs-with-gradients (Grathwohl et al., 2021): the gradient picks the site to change, a Metropolis test corrects."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

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


class GibbsWithGradients(DiscreteSampler):
    r"""Gibbs-with-gradients: change one site per step, chosen by a first-order estimate of the energy change.

    Grathwohl, Swersky, Hashemi, Duvenaud & Maddison (2021), "Oops I took a gradient: scalable
    sampling for discrete distributions". For :math:`p(x) \propto e^{-E(x)}` the gradient
    gives the change of energy of every single-site move at once,

    .. math::

        \Delta_{ik}(x) = \nabla_{ik} E(x) - \nabla_{ic_i} E(x) \approx E(x^{(i \to k)}) - E(x),
        \qquad \text{for bits: } \Delta_i(x) = (1 - 2x_i)\,\partial_i E(x),

    (:math:`c_i` the current value of site :math:`i`, :math:`x^{(i\to k)}` the position with it set
    to :math:`k \ne c_i`). The proposal draws one move from

    .. math::

        q(i, k \mid x) = \operatorname{softmax}_{(i, k):\, k \ne c_i}\big(-\Delta_{ik}(x) / 2\big),

    which favours moves that lower the energy, and the move :math:`x' = x^{(i\to k)}` is kept with
    probability (:func:`~ebmlib.samplers.metropolis_accept`)

    .. math::

        \alpha = \min\Big(1, \exp\big(E(x) - E(x')\big)\,
            \frac{q(i, c_i \mid x')}{q(i, k \mid x)}\Big),

    so :math:`e^{-E}` is stationary. For an energy that is linear in each site (an Ising model) the
    estimate is exact and the proposal is the locally balanced one. One step costs one
    energy-and-gradient evaluation (the accepted point's is reused); it changes at most one site.

    Positions are bits in {0, 1}, every entry a site; or, with ``one_hot=True``, one-hot vectors
    over their last dimension, ``(B, *sites, K)``. :meth:`sample` refuses anything else.

    Parameters
    ----------
    n_steps : int
        Default number of steps (one proposed change each) for :meth:`sample`.
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
    >>> x0 = torch.zeros(8, 4, 4)
    >>> x, diagnostics = GibbsWithGradients(n_steps=20).sample(
    ...     model, x0, generator=torch.Generator().manual_seed(0), return_diagnostics=True)
    >>> x.shape, diagnostics["acceptance_rate"].shape, bool(((x == 0) | (x == 1)).all())
    (torch.Size([8, 4, 4]), torch.Size([20]), True)
    """

    settings = ("n_steps", "one_hot")

    def __init__(self, n_steps: int = 20, one_hot: bool = False, **fast_paths: Unpack[FastPaths]) -> None:
        super().__init__(n_steps, one_hot, **fast_paths)

    def move_log_probabilities(self, x: Tensor, grad: Tensor, c: Tensor) -> Tensor:
        """:math:`\\log q(i, k \\mid x)` of every move, ``(B, S * (K - 1))``: site ``i`` to value
        ``(c_i + j) mod K`` at index ``i * (K - 1) + j - 1``."""
        return (-first_order_changes(grad, x, c, self.one_hot) / 2).flatten(1).log_softmax(-1)

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        x = state.position
        energy, grad = self.energy_and_grad_at(model, state, y)
        c = categories(x, self.one_hot)
        k = n_values(x, self.one_hot)
        forward = self.move_log_probabilities(x, grad, c)
        move = gumbel_argmax(forward, generator)  # (B,)
        site, offset = move // (k - 1), move % (k - 1) + 1
        current = c.gather(1, site[:, None])
        proposed = c.scatter(1, site[:, None], (current + offset[:, None]) % k)
        proposal = positions(proposed, x, self.one_hot)
        proposal_energy, proposal_grad = self.energy_and_grad(model, proposal, y)
        backward = self.move_log_probabilities(proposal, proposal_grad, proposed)
        back_move = site * (k - 1) + (k - offset) - 1  # the same site, back by offset K - j
        log_q_forward = forward.gather(1, move[:, None])[:, 0]
        log_q_backward = backward.gather(1, back_move[:, None])[:, 0]
        return metropolis_corrected(x, energy, grad, proposal, proposal_energy, proposal_grad, log_q_forward,
                                    log_q_backward, generator)
