"""Underdamped (kinetic) Langevin dynamics: momentum with friction, BAOAB splitting."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from .._checks import check_positive
from .base import ChainState, Extra, FastPaths, Sampler, StepInfo, per_chain_norm, standard_normal, with_extras


class KineticState(ChainState):
    """A :class:`~ebmlib.samplers.ChainState` that also carries each chain's velocity.

    Attributes
    ----------
    position, energy, grad
        As in :class:`~ebmlib.samplers.ChainState`.
    velocity : Tensor or None, same shape as ``position``
        ``extras["velocity"]``, a keyword argument of the constructor: the chains'
        velocities (unit mass: velocity = momentum); ``None`` draws fresh ones
        from :math:`\\mathcal{N}(0, I)` at the next step.

    Examples
    --------
    >>> import torch
    >>> state = KineticState(torch.zeros(3, 2), velocity=torch.ones(3, 2))
    >>> state.position.shape, state.velocity.shape, isinstance(state, ChainState)
    (torch.Size([3, 2]), torch.Size([3, 2]), True)
    """

    __slots__ = ()
    velocity = Extra[Tensor]()

    def __new__(
        cls, position: Tensor, energy: Tensor | None = None, grad: Tensor | None = None,
        extras: Mapping[str, Tensor | ChainState] | None = None, *, velocity: Tensor | None = None,
    ) -> KineticState:
        return super().__new__(cls, position, energy, grad, with_extras(extras, velocity=velocity))


class UnderdampedLangevin(Sampler):
    r"""Underdamped (kinetic) Langevin dynamics with unit mass and friction :math:`\gamma`.

    The chains follow :math:`dx = v\,dt`,
    :math:`dv = -\nabla E(x)\,dt - \gamma v\,dt + \sqrt{2\gamma}\,dW`, whose
    stationary law is :math:`p(x, v) \propto e^{-E(x) - \lVert v\rVert^2/2}`, so
    positions follow :math:`e^{-E}`. One step of size :math:`h` is the BAOAB
    splitting (Leimkuhler & Matthews, 2013), with :math:`\xi \sim \mathcal{N}(0, I)`:

    .. math::

        v &\leftarrow v - \tfrac{h}{2}\nabla E(x), \qquad
        x \leftarrow x + \tfrac{h}{2} v, \\
        v &\leftarrow e^{-\gamma h} v + \sqrt{1 - e^{-2\gamma h}}\,\xi, \\
        x &\leftarrow x + \tfrac{h}{2} v, \qquad
        v \leftarrow v - \tfrac{h}{2}\nabla E(x).

    Momentum carries the chains along the energy surface instead of the random
    walk of (overdamped) :class:`~ebmlib.samplers.Langevin`; the friction
    :math:`\gamma` sets how fast the velocity forgets (large :math:`\gamma`
    tends to overdamped Langevin, small to Hamiltonian motion). There is no
    accept/reject test, but BAOAB's error in the positions is small: for a
    Gaussian target their stationary law is exact for every stable step
    :math:`h < 2\sigma_{\min}`. One step costs one energy-and-gradient
    evaluation (the end point's is kept for the next step). The velocities
    travel in the returned :class:`KineticState`; a plain
    :class:`~ebmlib.samplers.ChainState` starts with fresh ones.

    Parameters
    ----------
    step_size : float
        :math:`h > 0`.
    friction : float
        :math:`\gamma > 0`.
    n_steps : int
        Default number of steps for :meth:`sample`.
    precision, compile_gradient, cuda_graph, check_finite
        Keyword-only: the fast paths and the finiteness check of
        :class:`~ebmlib.samplers.Sampler` (``"bf16"`` is valid: the update uses gradients only).

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import EnergyModel
    >>> class Quadratic(EnergyModel):
    ...     def energy(self, x, y=None):
    ...         return 0.5 * x.pow(2).sum(dim=1)
    >>> sampler = UnderdampedLangevin(step_size=0.5, friction=1.0, n_steps=200)
    >>> x = sampler.sample(Quadratic(), torch.zeros(4000, 2), generator=torch.Generator().manual_seed(0))
    >>> round(float(x.var()), 1)  # the target's variance is 1
    1.0
    >>> state, info = sampler.step(Quadratic(), ChainState(torch.zeros(3, 2)))
    >>> state.velocity.shape, info.energy.shape
    (torch.Size([3, 2]), torch.Size([3]))
    """

    settings = ("step_size", "friction", "n_steps")

    def __init__(
        self,
        step_size: float,
        friction: float = 1.0,
        n_steps: int = 20,
        **fast_paths: Unpack[FastPaths],
    ) -> None:
        super().__init__(n_steps, **fast_paths)
        self.step_size = check_positive(step_size, "step_size")
        self.friction = check_positive(friction, "friction")

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        x = state.position
        energy, grad = self.energy_and_grad_at(model, state, y)
        velocity = state.velocity if isinstance(state, KineticState) else None
        if velocity is None:
            velocity = standard_normal(x, generator)
        half = 0.5 * self.step_size
        damping = math.exp(-self.friction * self.step_size)
        v = velocity - half * grad
        x_new = x + half * v
        v = damping * v + math.sqrt(1.0 - damping**2) * standard_normal(x, generator)
        x_new = x_new + half * v
        new_energy, new_grad = self.energy_and_grad(model, x_new, y)
        v = v - half * new_grad
        return KineticState(x_new, new_energy, new_grad, velocity=v), StepInfo(energy, per_chain_norm(grad))
