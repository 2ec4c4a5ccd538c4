"""Langevin dynamics / SGLD with the knobs image EBMs need."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn
from typing_extensions import Unpack

from .._checks import check_positive
from .base import ChainState, FastPaths, Sampler, StepInfo, per_chain_norm, standard_normal


def check_clamp(clamp: tuple[float, float] | None) -> tuple[float, float] | None:
    """Raise unless ``clamp`` is ``None`` or a pair of real numbers ``(low, high)`` with ``low < high``.

    The bounds may be infinite (a one-sided box), never NaN; returns the pair as floats.

    Examples
    --------
    >>> check_clamp((-1, float("inf")))
    (-1.0, inf)
    """
    if clamp is None:
        return None
    if (not isinstance(clamp, (tuple, list)) or len(clamp) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in clamp)):
        raise TypeError(f"clamp must be None or a pair of numbers (low, high), got {clamp!r}")
    low, high = float(clamp[0]), float(clamp[1])
    if not low < high:
        raise ValueError(f"clamp must be (low, high) with low < high, got {clamp}")
    return low, high


class Langevin(Sampler):
    r"""Unadjusted Langevin dynamics (SGLD as used to train image EBMs).

    One step is

    .. math::

        x_{t+1} = \operatorname{clamp}_{[a, b]}\Big(x_t
            - \eta \, \operatorname{clip}_c\big(\nabla_x E(x_t)\big)
            + \sigma \, \xi_t\Big), \qquad \xi_t \sim \mathcal{N}(0, I),

    with :math:`\eta` = ``step_size``, :math:`\sigma` = ``noise_std``,
    :math:`c` = ``grad_clip`` (element-wise) and :math:`[a, b]` = ``clamp``.
    Exact Langevin dynamics, whose stationary law tends to :math:`e^{-E}` as
    :math:`\eta \to 0`, has :math:`\sigma = \sqrt{2\eta}`; that is the default.
    JEM decouples the two (``step_size=1, noise_std=0.01``), which samples a
    colder distribution but mixes far faster on images.

    Every number must be finite (``step_size``, ``noise_std``, ``grad_clip``)
    and ``n_steps`` an integer; anything else is a ``ValueError`` or
    ``TypeError`` naming the argument.

    Parameters
    ----------
    step_size : float
        :math:`\eta > 0`.
    noise_std : float, optional
        :math:`\sigma \ge 0`; default :math:`\sqrt{2\eta}`.
    n_steps : int
        Default number of steps for :meth:`sample`.
    grad_clip : float, optional
        Clip each gradient element to :math:`[-c, c]`, :math:`c > 0`.
    clamp : (float, float), optional
        Box :math:`[a, b]` the samples are clamped to after every step.
    precision, compile_gradient, cuda_graph, check_finite
        Keyword-only: the fast paths and the finiteness check of
        :class:`~ebmlib.samplers.Sampler`, which says what each keeps and costs.
        ``precision="bf16"`` evaluates the energy gradient under bfloat16 autocast
        (the fast path on CPUs with bf16 instructions and on GPUs); the update stays
        in the chains' dtype. On CPU, a convolutional model is fastest in bf16 with its
        weights in channels-last layout (``model.to(memory_format=torch.channels_last)``).

    Examples
    --------
    >>> import torch
    >>> from ebmlib.models import NetworkEnergy
    >>> model = NetworkEnergy(torch.nn.Linear(2, 1))
    >>> sampler = Langevin(step_size=0.01, n_steps=10)
    >>> g = torch.Generator().manual_seed(0)
    >>> sampler.sample(model, torch.zeros(8, 2), generator=g).shape
    torch.Size([8, 2])
    >>> fast = Langevin(step_size=0.01, n_steps=10, precision="bf16")
    >>> fast.sample(model, torch.zeros(8, 2), generator=g).dtype
    torch.float32
    """

    settings = ("step_size", "noise_std", "n_steps", "grad_clip", "clamp")

    def __init__(
        self,
        step_size: float,
        noise_std: float | None = None,
        n_steps: int = 20,
        grad_clip: float | None = None,
        clamp: tuple[float, float] | None = None,
        **fast_paths: Unpack[FastPaths],
    ) -> None:
        super().__init__(n_steps, **fast_paths)
        self.step_size = check_positive(step_size, "step_size")
        noise_std = math.sqrt(2.0 * self.step_size) if noise_std is None else noise_std
        self.noise_std = check_positive(noise_std, "noise_std", allow_zero=True)
        self.grad_clip = None if grad_clip is None else check_positive(grad_clip, "grad_clip")
        self.clamp = check_clamp(clamp)

    def step(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[ChainState, StepInfo]:
        energy, grad = self.energy_and_grad_at(model, state, y)
        return ChainState(self.move(state.position, grad, generator)), StepInfo(energy, per_chain_norm(grad))

    def advance(
        self, model: nn.Module, state: ChainState, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> ChainState:
        _, grad = self.energy_and_grad_at(model, state, y)
        return ChainState(self.move(state.position, grad, generator))

    def move(self, x: Tensor, grad: Tensor, generator: torch.Generator | None) -> Tensor:
        """The update rule above, from positions ``x`` and gradients ``grad``; returns new positions."""
        if self.grad_clip is not None:
            grad = grad.clamp(-self.grad_clip, self.grad_clip)
        x = torch.add(x, grad, alpha=-self.step_size)  # a new tensor: the in-place ops below are safe
        if self.noise_std > 0:
            x.add_(standard_normal(x, generator), alpha=self.noise_std)
        if self.clamp is not None:
            x.clamp_(self.clamp[0], self.clamp[1])
        return x
