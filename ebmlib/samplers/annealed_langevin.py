"""Annealed Langevin dynamics: Langevin steps over a decreasing schedule of temperatures or noise levels."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from .._checks import check_count, check_positive
from .base import ChainState, Extra, FastPaths, Sampler, StepInfo, per_chain_norm, standard_normal, with_extras


class AnnealedState(ChainState):
    """A :class:`~ebmlib.samplers.ChainState` that also knows how far along the schedule it is.

    Attributes
    ----------
    position, energy, grad
        As in :class:`~ebmlib.samplers.ChainState`; ``energy`` and ``grad`` are
        those of the level the next step runs at.
    step_index : Tensor of int64, shape ``()``, or None
        ``extras["step_index"]``, a keyword argument of the constructor: steps
        taken since the start of the schedule; ``None`` means 0.

    Examples
    --------
    >>> import torch
    >>> state = AnnealedState(torch.zeros(3, 2), step_index=torch.tensor(5))
    >>> int(state.step_index), isinstance(state, ChainState)
    (5, True)
    """

    __slots__ = ()
    step_index = Extra[Tensor]()

    def __new__(
        cls, position: Tensor, energy: Tensor | None = None, grad: Tensor | None = None,
        extras: Mapping[str, Tensor | ChainState] | None = None, *, step_index: Tensor | None = None,
    ) -> AnnealedState:
        return super().__new__(cls, position, energy, grad, with_extras(extras, step_index=step_index))


class AnnealedLangevin(Sampler):
    r"""Langevin dynamics over a decreasing schedule of temperatures or noise levels.

    The chain runs ``steps_per_level`` Langevin steps at each level
    :math:`k = 1, \dots, L` in turn (and stays at the last level after the
    schedule ends). With :math:`\xi \sim \mathcal{N}(0, I)` and
    :math:`\eta` = ``step_size``, a step at level :math:`k` is
    :math:`x \leftarrow x - \eta_k \nabla_x E_k(x) + \sqrt{2\eta_k}\,\xi`, Langevin
    dynamics for :math:`p_k \propto e^{-E_k}`, where:

    - ``temperatures`` :math:`T_1 \ge \dots \ge T_L > 0` (any energy model):
      :math:`E_k = E/T_k` and :math:`\eta_k = \eta\,T_k`, so that

      .. math:: x \leftarrow x - \eta \nabla_x E(x) + \sqrt{2\eta T_k}\,\xi;

    - ``noise_levels`` :math:`\sigma_1 \ge \dots \ge \sigma_L > 0` (a
      noise-conditional model, as in Song & Ermon 2019): :math:`E_k(x) = E(x, k)`,
      the model called with the level index :math:`k - 1` in place of labels
      (int64, shape ``(B,)``), trained so that :math:`e^{-E(\cdot, k)}` is the data
      density convolved with :math:`\mathcal{N}(0, \sigma_k^2 I)`, and
      :math:`\eta_k = \eta\,\sigma_k^2 / \sigma_L^2`.

    Why the two differ on multimodal targets: convolving a mixture with
    Gaussian noise keeps its mixture weights, so chains that mix between modes
    at the large noise levels carry the right proportions down to
    :math:`\sigma_L`. Tempering does not: :math:`p^{1/T}` flattens the weights
    :math:`w_i` towards :math:`w_i^{1/T}`, and the chains keep the proportions
    of the temperature at which they last crossed between modes. Temperature
    annealing is the generic choice for finding low-energy regions (simulated
    annealing); for the right weights between separated modes use noise
    levels, or :class:`~ebmlib.samplers.ParallelTempering`.

    The position along the schedule travels in the returned
    :class:`AnnealedState` (a plain :class:`~ebmlib.samplers.ChainState`
    starts at the first level), as a tensor: no step reads a value on the host.
    One step costs one energy-and-gradient evaluation; the diagnostics'
    ``energy`` is :math:`E` (temperatures) or :math:`E(\cdot, k)` (noise levels)
    at the step's start.

    Parameters
    ----------
    step_size : float
        :math:`\eta > 0`, the step at :math:`T = 1` or at the last noise level.
    temperatures : sequence of float, optional
        :math:`T_1 \ge \dots \ge T_L > 0`.
    noise_levels : sequence of float, optional
        :math:`\sigma_1 \ge \dots \ge \sigma_L > 0`; give exactly one of
        ``temperatures`` and ``noise_levels``.
    steps_per_level : int
        Langevin steps at each level.
    n_steps : int, optional
        Default number of steps for :meth:`sample`; default the whole schedule,
        :math:`L \times` ``steps_per_level``.
    precision, compile_gradient, cuda_graph, check_finite
        Keyword-only: the fast paths and the finiteness check of
        :class:`~ebmlib.samplers.Sampler` (``"bf16"`` is valid: the update uses gradients only).

    Examples
    --------
    Simulated annealing into the minimum of a quadratic energy:

    >>> import torch
    >>> from ebmlib.models import EnergyModel
    >>> class Quadratic(EnergyModel):
    ...     def energy(self, x, y=None):
    ...         return 0.5 * (x - 3.0).pow(2).sum(dim=1)
    >>> sampler = AnnealedLangevin(step_size=0.1, temperatures=[10.0, 1.0, 0.01], steps_per_level=100)
    >>> sampler.n_steps
    300
    >>> x = sampler.sample(Quadratic(), torch.zeros(500, 2), generator=torch.Generator().manual_seed(0))
    >>> round(float(x.mean()), 1), round(float(x.std()), 1)  # the last level samples N(3, 0.01 I)
    (3.0, 0.1)
    """

    settings = ("step_size", "levels", "noise_conditional", "steps_per_level", "n_steps")

    def __init__(
        self,
        step_size: float,
        temperatures: Sequence[float] | None = None,
        noise_levels: Sequence[float] | None = None,
        steps_per_level: int = 10,
        n_steps: int | None = None,
        **fast_paths: Unpack[FastPaths],
    ) -> None:
        if (temperatures is None) == (noise_levels is None):
            raise ValueError("give exactly one of temperatures and noise_levels, got "
                             f"temperatures={temperatures} and noise_levels={noise_levels}")
        name, given = ("temperatures", temperatures) if temperatures is not None else ("noise_levels", noise_levels)
        levels = [float(v) for v in given or ()]
        increasing = any(a < b for a, b in zip(levels, levels[1:], strict=False))
        if not levels or any(not 0 < v < math.inf for v in levels) or increasing:
            raise ValueError(f"{name} must be a non-empty, non-increasing sequence of finite positive numbers, "
                             f"got {levels}")
        steps_per_level = check_count(steps_per_level, "steps_per_level")
        super().__init__(len(levels) * steps_per_level if n_steps is None else n_steps, **fast_paths)
        self.step_size = step_size = check_positive(step_size, "step_size")
        self.steps_per_level = steps_per_level
        self.noise_conditional = noise_levels is not None
        self.levels = tuple(levels)
        if self.noise_conditional:
            drift = [step_size * (sigma / levels[-1]) ** 2 for sigma in levels]
            noise = [math.sqrt(2.0 * eta) for eta in drift]
        else:
            drift = [step_size] * len(levels)
            noise = [math.sqrt(2.0 * step_size * t) for t in levels]
        self.register_buffer("drift_sizes", torch.tensor(drift, dtype=torch.float64))
        self.register_buffer("noise_stds", torch.tensor(noise, dtype=torch.float64))
        self.drift_sizes: Tensor
        self.noise_stds: Tensor

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        x = state.position
        if self.noise_conditional and y is not None:
            raise ValueError("AnnealedLangevin with noise_levels passes the level index to the model in place of "
                             "labels, so y must be None, got a tensor")
        step_index = state.step_index if isinstance(state, AnnealedState) else None
        if step_index is None:
            step_index = torch.zeros((), dtype=torch.long, device=x.device)
        level = self.level_at(step_index)
        if self.noise_conditional:  # a cached energy would be another level's (or the unconditional one)
            energy, grad = self.energy_and_grad(model, x, level.expand(x.shape[0]))
        else:  # tempering rescales the step, not the energy: E and its gradient are those of the model
            energy, grad = self.energy_and_grad_at(model, state, y)
        noise = standard_normal(x, generator)
        x_new = x - self.drift_sizes[level].to(x.dtype) * grad + self.noise_stds[level].to(x.dtype) * noise
        new_state = AnnealedState(x_new, step_index=step_index + 1)
        return new_state, StepInfo(energy, per_chain_norm(grad))

    def level_at(self, step_index: Tensor) -> Tensor:
        """Index (0-based, int64 tensor) of the level that step ``step_index`` runs at."""
        return torch.clamp(step_index // self.steps_per_level, max=len(self.levels) - 1)
