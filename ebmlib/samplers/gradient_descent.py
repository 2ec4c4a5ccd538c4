"""Gradient descent on the energy, plain or with (Nesterov) momentum: the sampler of equilibrium matching."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from .._checks import check_positive
from .base import ChainState, Extra, FastPaths, Sampler, StepInfo, per_chain_norm, with_extras


class DescentState(ChainState):
    """A :class:`~ebmlib.samplers.ChainState` that also carries each chain's velocity (momentum buffer).

    Attributes
    ----------
    position, energy, grad
        As in :class:`~ebmlib.samplers.ChainState`.
    velocity : Tensor or None, same shape as ``position``
        ``extras["velocity"]``, a keyword argument of the constructor: the last
        displacement of the heavy-ball recursion, :math:`v` in
        :class:`GradientDescent`; ``None`` (or a plain
        :class:`~ebmlib.samplers.ChainState`) starts at rest, :math:`v = 0`.

    Examples
    --------
    >>> import torch
    >>> state = DescentState(torch.zeros(3, 2), velocity=torch.ones(3, 2))
    >>> state.velocity.shape, isinstance(state, ChainState), DescentState(torch.zeros(3, 2)).velocity
    (torch.Size([3, 2]), True, None)
    """

    __slots__ = ()
    velocity = Extra[Tensor]()

    def __new__(
        cls, position: Tensor, energy: Tensor | None = None, grad: Tensor | None = None,
        extras: Mapping[str, Tensor | ChainState] | None = None, *, velocity: Tensor | None = None,
    ) -> DescentState:
        return super().__new__(cls, position, energy, grad, with_extras(extras, velocity=velocity))


class GradientDescent(Sampler):
    r"""Gradient descent on the energy, plain or with heavy-ball or Nesterov momentum; no noise.

    **Not an MCMC sampler of** :math:`e^{-E}`: the chains descend the energy and
    come to rest at its minima (or wherever they are stopped), whatever their
    number. It is the sampler equilibrium matching prescribes
    (:class:`~ebmlib.recipes.EquilibriumMatchingEBM`, Wang & Du, 2025), whose
    learned landscape is built so that descent from noise ends on the data, and
    a plain optimiser for other uses (finding modes, polishing samples). It
    draws no random number: the result depends on the starting points only, and
    ``generator`` is accepted for the interface and ignored.

    With :math:`\eta` = ``step_size``, :math:`\mu` = ``momentum`` and
    :math:`g_k = \nabla E(x_k)`, one step is

    .. math::

        v_{k+1} = \mu\, v_k - \eta\, g_k, \qquad
        x_{k+1} = \begin{cases}
            x_k + v_{k+1} & \text{(heavy ball; plain descent } x_k - \eta g_k \text{ when } \mu = 0), \\
            x_k + \mu\, v_{k+1} - \eta\, g_k & \text{(Nesterov: nesterov=True)},
        \end{cases}

    starting at rest, :math:`v_0 = 0`. This is the update of
    ``torch.optim.SGD(lr=step_size, momentum=momentum, nesterov=nesterov)``
    (no dampening) applied to every chain, with :math:`v = -\eta b` for its
    momentum buffer :math:`b`; the Nesterov form evaluates the gradient at the
    chains' positions, which are the look-ahead points of Sutskever et al.'s
    (2013) formulation, so one step costs one energy-and-gradient evaluation and
    its diagnostics are those of the positions it starts from, as for every
    sampler. On a quadratic with curvatures in :math:`[m, L]` and
    :math:`\eta = 1/L`, plain descent needs about :math:`\kappa = L/m` steps per
    factor :math:`e` of error, Nesterov with
    :math:`\mu = (\sqrt\kappa - 1)/(\sqrt\kappa + 1)` about :math:`\sqrt\kappa`.

    The velocities travel in the returned :class:`DescentState` when
    :math:`\mu > 0`; a plain :class:`~ebmlib.samplers.ChainState` starts at
    rest, so :meth:`sample` always starts at rest.

    Parameters
    ----------
    step_size : float
        :math:`\eta > 0`.
    n_steps : int
        Default number of steps for :meth:`sample`.
    momentum : float
        :math:`\mu \in [0, 1)`; 0 (the default) is plain gradient descent.
    nesterov : bool
        Nesterov's look-ahead momentum instead of the heavy ball; needs ``momentum > 0``.
    precision, compile_gradient, cuda_graph, check_finite
        Keyword-only: the fast paths and the finiteness check of
        :class:`~ebmlib.samplers.Sampler` (``"bf16"`` is valid: the update uses gradients only).

    Examples
    --------
    Both descend :math:`E(x) = \tfrac12 \lVert x - 1 \rVert^2` to its minimum, the same for every seed:

    >>> import torch
    >>> from ebmlib.models import EnergyModel
    >>> class Bowl(EnergyModel):
    ...     def energy(self, x, y=None):
    ...         return 0.5 * (x - 1).pow(2).sum(dim=1)
    >>> plain = GradientDescent(step_size=0.5, n_steps=30)
    >>> nesterov = GradientDescent(step_size=0.5, n_steps=30, momentum=0.5, nesterov=True)
    >>> [torch.allclose(s.sample(Bowl(), torch.zeros(4, 2)), torch.ones(4, 2)) for s in (plain, nesterov)]
    [True, True]
    >>> state, info = nesterov.step(Bowl(), ChainState(torch.zeros(3, 2)))
    >>> state.velocity, info.energy  # v_1 = -0.5 * grad = 0.5; E(0) = 1 per chain
    (tensor([[0.5000, 0.5000],
            [0.5000, 0.5000],
            [0.5000, 0.5000]]), tensor([1., 1., 1.]))
    """

    settings = ("step_size", "momentum", "nesterov", "n_steps")

    def __init__(
        self,
        step_size: float,
        n_steps: int = 20,
        momentum: float = 0.0,
        nesterov: bool = False,
        **fast_paths: Unpack[FastPaths],
    ) -> None:
        super().__init__(n_steps, **fast_paths)
        self.step_size = check_positive(step_size, "step_size")
        self.momentum = check_positive(momentum, "momentum", allow_zero=True)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be less than 1 (the velocity must decay), got {momentum}")
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r} ({type(nesterov).__name__})")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0 (with momentum=0 it is plain gradient descent)")
        self.nesterov = nesterov

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        energy, grad = self.energy_and_grad_at(model, state, y)
        return self.move(state, grad), StepInfo(energy, per_chain_norm(grad))

    def advance(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> ChainState:
        _, grad = self.energy_and_grad_at(model, state, y)
        return self.move(state, grad)

    def move(self, state: ChainState, grad: Tensor) -> ChainState:
        """The update rule above, from a state and the gradient at its position; returns the next state."""
        x = state.position
        if self.momentum == 0:
            return ChainState(torch.add(x, grad, alpha=-self.step_size))
        velocity = state.velocity if isinstance(state, DescentState) else None
        step = grad.mul(-self.step_size)
        velocity = step if velocity is None else torch.add(step, velocity, alpha=self.momentum)
        if self.nesterov:
            return DescentState(x + self.momentum * velocity + step, velocity=velocity)
        return DescentState(x + velocity, velocity=velocity)
