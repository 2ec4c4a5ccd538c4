"""Hamiltonian Monte Carlo with a leapfrog integrator."""

from __future__ import annotations

import math
import numbers
from abc import abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from typing_extensions import Self, Unpack

from .._checks import check_count, check_positive
from .base import ChainState, FastPaths, Sampler, StepInfo, per_chain, per_chain_norm, standard_normal
from .metropolis import metropolis_accept


def kinetic_energy(momentum: Tensor, inverse_mass: Tensor | None = None) -> Tensor:
    """:math:`\\tfrac12 p^\\top M^{-1} p` per chain, shape ``(B,)``, for momenta ``(B, *event_shape)``.

    ``inverse_mass`` is the diagonal of :math:`M^{-1}`, shaped like one chain
    (``event_shape``); ``None`` is the unit mass, :math:`\\tfrac12 \\lVert p\\rVert^2`.

    Examples
    --------
    >>> import torch
    >>> kinetic_energy(torch.tensor([[1.0, 2.0], [0.0, 2.0]]))
    tensor([2.5000, 2.0000])
    >>> kinetic_energy(torch.tensor([[1.0, 2.0], [0.0, 2.0]]), inverse_mass=torch.tensor([2.0, 0.5]))
    tensor([2., 1.])
    """
    if inverse_mass is None:
        return 0.5 * momentum.flatten(1).pow(2).sum(1)
    return 0.5 * (inverse_mass * momentum.pow(2)).flatten(1).sum(1)


def velocity(momentum: Tensor, inverse_mass: Tensor | None) -> Tensor:
    """:math:`M^{-1} p`, the rate of change of the position: ``momentum`` itself for the unit mass (``None``)."""
    return momentum if inverse_mass is None else inverse_mass * momentum


def draw_momentum(like: Tensor, inverse_mass: Tensor | None, generator: torch.Generator | None) -> Tensor:
    """A momentum :math:`p \\sim \\mathcal{N}(0, M)` shaped like ``like``, drawn from ``generator``.

    :math:`p = z / \\sqrt{M^{-1}}` for a standard normal :math:`z`: one draw per
    coordinate whatever the mass, so the unit mass (``None``) and an
    ``inverse_mass`` of ones draw the same momenta.
    """
    noise = standard_normal(like, generator)
    return noise if inverse_mass is None else noise * inverse_mass.rsqrt()


def check_inverse_mass(
    inverse_mass: Tensor | Sequence[float] | None, name: str = "inverse_mass"
) -> tuple[float, ...] | None:
    """``inverse_mass`` as a flat tuple of finite positive floats (a sampler's setting), or ``None``.

    Reads the values of a tensor on the host (once, at construction).

    Examples
    --------
    >>> import torch
    >>> check_inverse_mass(torch.tensor([[1.0, 4.0]])), check_inverse_mass(None)
    ((1.0, 4.0), None)
    """
    if inverse_mass is None:
        return None
    if isinstance(inverse_mass, Tensor):
        values = inverse_mass.detach().flatten().tolist()
    elif isinstance(inverse_mass, Sequence) and not isinstance(inverse_mass, str):
        values = list(inverse_mass)
    else:
        raise TypeError(f"{name} must be a tensor or a sequence of positive numbers (the diagonal of the inverse mass "
                        f"matrix, one per coordinate), got {type(inverse_mass).__name__}")
    if any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in values):
        raise TypeError(f"{name} must hold real numbers, got {values[:5]}{' ...' if len(values) > 5 else ''}")
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        shown = f"{values[:5]}{' ...' if len(values) > 5 else ''}"
        raise ValueError(f"{name} must be a non-empty sequence of finite positive numbers, got {shown}")
    return tuple(float(v) for v in values)


def inverse_mass_like(inverse_mass: Tensor | None, like: Tensor, name: str = "inverse_mass") -> Tensor | None:
    """``inverse_mass`` (as many entries as one chain) shaped ``like``'s ``event_shape``, on its device and dtype.

    Checks the number of elements only (no value is read).
    """
    if inverse_mass is None:
        return None
    event_shape = like.shape[1:]
    if inverse_mass.numel() != event_shape.numel():
        raise ValueError(f"{name} must have one entry per coordinate of a chain, {event_shape.numel()} for chains of "
                         f"shape {tuple(like.shape)}, got {inverse_mass.numel()} (shape {tuple(inverse_mass.shape)})")
    return inverse_mass.to(like.device, like.dtype).reshape(event_shape)


def step_size_like(step_size: float | Tensor, like: Tensor) -> float | Tensor:
    """A float step size as it is; a tensor one, shape ``()`` or ``(B,)`` (one per chain), broadcastable to ``like``."""
    if not isinstance(step_size, Tensor):
        return step_size
    if step_size.dim() > 1 or (step_size.dim() == 1 and step_size.shape[0] != like.shape[0]):
        raise ValueError(f"a tensor step_size must have shape () or ({like.shape[0]},) (one per chain), "
                         f"got {tuple(step_size.shape)}")
    return per_chain(step_size.to(like.dtype).expand(like.shape[0]), like)


class MassMatrixSampler(Sampler):
    r"""A sampler with a leapfrog step size and a diagonal inverse mass :math:`M^{-1}`, both settable per call.

    What :class:`~ebmlib.samplers.HMC` and :class:`~ebmlib.samplers.NUTS` share, and what
    :class:`~ebmlib.samplers.WindowedAdaptation` tunes
    (:class:`~ebmlib.samplers.AdaptableSampler`): the checked settings
    ``step_size`` and ``inverse_mass`` (a tuple of floats, or ``None`` for the
    unit mass) with a tensor copy of the latter that moves with the sampler
    (``sampler.to(device)``), a :meth:`step` that is :meth:`transition` with
    the sampler's own settings, and :meth:`tuned`. Subclasses implement
    ``_transition(model, state, y, generator, step_size, mass)``, which gets the
    step size and the inverse mass shaped like one chain, both checked.

    Examples
    --------
    >>> import torch
    >>> sampler = HMC(step_size=0.1, inverse_mass=[1.0, 4.0])
    >>> isinstance(sampler, MassMatrixSampler), sampler.inverse_mass, sampler._inverse_mass.dtype
    (True, (1.0, 4.0), torch.float64)
    """

    def __init__(
        self,
        step_size: float,
        n_steps: int,
        inverse_mass: Tensor | Sequence[float] | None,
        **fast_paths: Unpack[FastPaths],
    ) -> None:
        super().__init__(n_steps, **fast_paths)
        self.step_size = check_positive(step_size, "step_size")
        self.inverse_mass = check_inverse_mass(inverse_mass)
        self.register_buffer("_inverse_mass", None if self.inverse_mass is None else torch.tensor(
            self.inverse_mass, dtype=torch.float64), persistent=False)  # the setting on the chains' device
        self._inverse_mass: Tensor | None

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        return self.transition(model, state, y, generator)

    def transition(
        self,
        model: nn.Module,
        state: ChainState,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        step_size: float | Tensor | None = None,
        inverse_mass: Tensor | None = None,
    ) -> tuple[ChainState, StepInfo]:
        """:meth:`step` with the step size and inverse mass given here in place of the sampler's own (``None``).

        What an adaptation calls while it tunes them: a tensor ``step_size``
        (shape ``()``, or ``(B,)`` for one per chain) and ``inverse_mass``
        (one entry per coordinate) are used as they are, without a host read.
        """
        step_size = self.step_size if step_size is None else step_size
        step_size_like(step_size, state.position)  # checks a tensor's shape
        mass = inverse_mass_like(self._inverse_mass if inverse_mass is None else inverse_mass, state.position)
        return self._transition(model, state, y, generator, step_size, mass)

    @abstractmethod
    def _transition(
        self, model: nn.Module, state: ChainState, y: Tensor | None, generator: torch.Generator | None,
        step_size: float | Tensor, mass: Tensor | None,
    ) -> tuple[ChainState, StepInfo]:
        """One step with ``step_size`` (float, or checked tensor) and ``mass``, :math:`M^{-1}` shaped like one chain."""

    def tuned(self, step_size: float, inverse_mass: Tensor | Sequence[float] | None) -> Self:
        """A new sampler configured as this one but for ``step_size`` and ``inverse_mass`` (what a warm-up found).

        Examples
        --------
        >>> HMC(step_size=0.1, n_leapfrog=7).tuned(0.5, [1.0, 4.0]).configuration()[:4]
        (('step_size', 0.5), ('n_leapfrog', 7), ('n_steps', 20), ('inverse_mass', (1.0, 4.0)))
        """
        return type(self)(**{**dict(self.configuration()), "step_size": step_size, "inverse_mass": inverse_mass})


class HMC(MassMatrixSampler):
    r"""Hamiltonian Monte Carlo with a diagonal mass matrix (unit by default) and a Metropolis test.

    Each step draws a momentum :math:`p \sim \mathcal{N}(0, M)`, integrates
    :math:`H(x, p) = E(x) + \tfrac12 p^\top M^{-1} p` with ``n_leapfrog``
    leapfrog steps of size :math:`\epsilon`,

    .. math::

        p \leftarrow p - \tfrac{\epsilon}{2}\nabla E(x), \quad
        x \leftarrow x + \epsilon M^{-1} p, \quad
        p \leftarrow p - \tfrac{\epsilon}{2}\nabla E(x),

    and keeps the end point with probability
    :math:`\min(1, \exp(H(x_0, p_0) - H(x_L, p_L)))`
    (:func:`~ebmlib.samplers.metropolis_accept`). One step costs
    ``n_leapfrog`` energy-and-gradient evaluations. :math:`M^{-1}` is
    ``diag(inverse_mass)``, the identity by default; set it to the target's
    variances (what :class:`~ebmlib.samplers.WindowedAdaptation` estimates) and
    every coordinate moves on its own scale.

    Parameters
    ----------
    step_size : float
        Leapfrog step :math:`\epsilon > 0`, finite.
    n_leapfrog : int
        Leapfrog steps per HMC step, ``>= 1``.
    n_steps : int
        Default number of HMC steps for :meth:`sample`.
    inverse_mass : Tensor or sequence of float, optional
        The diagonal of :math:`M^{-1}`, one finite positive number per
        coordinate of a chain (``event_shape``, any shape with that many
        elements). ``None`` (default): unit mass. A setting, kept as a tuple
        of floats, and a tensor copy that moves with the sampler
        (``sampler.to(device)``: do so for ``cuda_graph``).
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
    >>> HMC(step_size=0.1, inverse_mass=torch.tensor([1.0, 100.0])).inverse_mass
    (1.0, 100.0)
    """

    settings = ("step_size", "n_leapfrog", "n_steps", "inverse_mass")
    precisions = ("full",)

    def __init__(
        self,
        step_size: float,
        n_leapfrog: int = 5,
        n_steps: int = 20,
        inverse_mass: Tensor | Sequence[float] | None = None,
        **fast_paths: Unpack[FastPaths],
    ) -> None:
        super().__init__(step_size, n_steps, inverse_mass, **fast_paths)
        self.n_leapfrog = check_count(n_leapfrog, "n_leapfrog")

    def _transition(
        self, model: nn.Module, state: ChainState, y: Tensor | None, generator: torch.Generator | None,
        step_size: float | Tensor, mass: Tensor | None,
    ) -> tuple[ChainState, StepInfo]:
        x0 = state.position
        eps = step_size_like(step_size, x0)
        energy0, grad0 = self.energy_and_grad_at(model, state, y)
        p0 = draw_momentum(x0, mass, generator)
        x, p, energy, grad = x0, p0 - 0.5 * eps * grad0, energy0, grad0
        for i in range(self.n_leapfrog):
            x = x + eps * velocity(p, mass)
            energy, grad = self.energy_and_grad(model, x, y)
            p = p - (eps if i < self.n_leapfrog - 1 else 0.5 * eps) * grad
        log_ratio = energy0 + kinetic_energy(p0, mass) - energy - kinetic_energy(p, mass)
        new_state, acceptance = metropolis_accept(
            ChainState(x0, energy0, grad0), ChainState(x, energy, grad), log_ratio, generator
        )
        return new_state, StepInfo(energy0, per_chain_norm(grad0), acceptance)
