"""Equilibrium matching (Wang & Du, 2025): regress a time-free gradient field on the way from noise to data."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive
from .base import EnergyBatch, Loss, LossInput


@dataclass(frozen=True)
class InterpolatedGradients(LossInput):
    r"""A field between noise and data: :math:`f_\theta(x_\gamma)` at :math:`x_\gamma = \gamma x + (1-\gamma)\epsilon`.

    Attributes
    ----------
    data : Tensor, shape ``(B, *event_shape)``
        :math:`x`, the data.
    noise : Tensor, shape ``(B, *event_shape)``
        :math:`\epsilon`, the noise each point was mixed with (:math:`\mathcal{N}(0, I)` in
        :class:`~ebmlib.recipes.EquilibriumMatchingEBM`).
    interpolation : Tensor, shape ``(B,)``
        :math:`\gamma \in [0, 1]` of each point: 0 is pure noise, 1 the data.
    gradient : Tensor, shape ``(B, *event_shape)``
        :math:`f_\theta(x_\gamma)`, differentiable in the parameters: :math:`\nabla_x E_\theta(x_\gamma)`
        of an energy model, or the output of a network that predicts the field directly.

    Examples
    --------
    >>> import torch
    >>> inputs = InterpolatedGradients(data=torch.ones(4, 2), noise=torch.zeros(4, 2),
    ...                                interpolation=torch.full((4,), 0.5), gradient=torch.zeros(4, 2))
    >>> inputs.gradient.shape
    torch.Size([4, 2])
    """

    data: Tensor
    noise: Tensor
    interpolation: Tensor
    gradient: Tensor


class EquilibriumMatching(Loss):
    r"""Equilibrium matching: fit one time-free field whose descent leads from noise to the data.

    For data :math:`x`, noise :math:`\epsilon \sim \mathcal{N}(0, I)` and
    :math:`\gamma \sim U(0, 1)`, the points :math:`x_\gamma = \gamma x + (1-\gamma)\epsilon`
    lie on straight lines from the noise (:math:`\gamma = 0`) to the data
    (:math:`\gamma = 1`), and the field :math:`f_\theta` (the gradient of the
    energy, :math:`\nabla_x E_\theta`) is regressed on the descent direction
    along them, scaled by a magnitude :math:`c(\gamma)` that vanishes at the data:

    .. math::

        \mathcal{L} = \frac{1}{B} \sum_{i=1}^{B}
            \big\lVert f_\theta(x_{\gamma_i}) - (\epsilon_i - x_i)\, c(\gamma_i) \big\rVert^2,
        \qquad
        c(\gamma) = \lambda \min\Big(1, \frac{1 - \gamma}{1 - a}\Big),

    the *truncated decay* of Wang & Du (2025), with :math:`\lambda` =
    ``gradient_multiplier`` and :math:`a` = ``decay_start`` (their defaults,
    :math:`\lambda = 4`, :math:`a = 0.8`; :math:`a = 0` is the linear decay
    :math:`\lambda(1 - \gamma)`). No time or noise level enters :math:`f_\theta`:
    the minimiser is the average of the targets over every :math:`(\gamma, x,
    \epsilon)` that passes through a point, a landscape whose descent
    :math:`x \leftarrow x - \eta f_\theta(x)` (:class:`~ebmlib.samplers.GradientDescent`)
    moves noise towards the data, slowing down as :math:`c` falls.

    **Step size.** Were :math:`\gamma` known at every point, a descent step from
    :math:`x_\gamma` would move it to :math:`x_{\gamma + \eta c(\gamma)}`: by
    :math:`\eta\lambda` in :math:`\gamma` while :math:`\gamma \le a`, then
    :math:`1 - \gamma` shrinks by the factor :math:`1 - \eta\lambda / (1 - a)`
    per step. With :math:`\eta = (1 - a)/\lambda` (:attr:`descent_step_size`),
    descent from noise reaches the data, :math:`\gamma = 1`, in
    :math:`\lceil 1 / (1 - a) \rceil` steps (:attr:`descent_steps`, 5 with the
    defaults) and stays there; smaller steps approach it geometrically. The
    field knows :math:`\gamma` only where a point pins it down (the paper's
    setting: images, data near a low-dimensional manifold). In two dimensions,
    where many :math:`\gamma` share a point, descent of the exact minimiser from
    noise arrives near the data in that many steps but with its spread shrunk
    (by about a quarter for the 2D Gaussian of ``tests/test_equilibrium_matching.py``),
    and, continued, collapses onto fixed points: it is not a sampler of the
    data's law there.

    The field can be an energy's gradient (:class:`~ebmlib.recipes.EquilibriumMatchingEBM`
    computes :math:`\nabla_x E_\theta(x_\gamma)` with its graph) or any network's
    output of the data's shape: the loss reads only :class:`InterpolatedGradients`.

    Metrics: ``gradient_norm`` and ``target_norm``, the mean :math:`\lVert f_\theta(x_\gamma) \rVert`
    and :math:`\lVert (\epsilon - x) c(\gamma) \rVert`.

    Parameters
    ----------
    gradient_multiplier : float
        :math:`\lambda > 0`, the field's magnitude far from the data.
    decay_start : float
        :math:`a \in [0, 1)`: :math:`c` is constant up to :math:`\gamma = a`, then falls linearly to 0 at 1.

    Examples
    --------
    The target itself gives zero loss; the magnitude is :math:`\lambda` up to :math:`a` and 0 at the data:

    >>> import torch
    >>> loss_fn = EquilibriumMatching()
    >>> loss_fn.magnitude(torch.tensor([0.0, 0.8, 0.9, 1.0])).round(decimals=4)
    tensor([4., 4., 2., 0.])
    >>> x, noise, gamma = torch.ones(3, 2), torch.zeros(3, 2), torch.tensor([0.1, 0.5, 0.95])
    >>> target = (noise - x) * loss_fn.magnitude(gamma)[:, None]
    >>> float(loss_fn(EnergyBatch(InterpolatedGradients(x, noise, gamma, target)))[0])
    0.0
    >>> loss_fn.descent_step_size, loss_fn.descent_steps
    (0.05, 5)
    """

    def __init__(self, gradient_multiplier: float = 4.0, decay_start: float = 0.8) -> None:
        super().__init__()
        self.gradient_multiplier = check_positive(gradient_multiplier, "gradient_multiplier")
        self.decay_start = check_positive(decay_start, "decay_start", allow_zero=True)
        if self.decay_start >= 1:
            raise ValueError(f"decay_start must be less than 1 (the magnitude must fall to 0 at the data), "
                             f"got {decay_start}")

    @property
    def descent_step_size(self) -> float:
        r""":math:`\eta = (1 - a)/\lambda`: the step of :class:`~ebmlib.samplers.GradientDescent` that walks
        from noise to data in :attr:`descent_steps` steps (see the class's *Step size*)."""
        return round((1 - self.decay_start) / self.gradient_multiplier, 12)

    @property
    def descent_steps(self) -> int:
        r""":math:`\lceil 1 / (1 - a) \rceil`: the steps of size :attr:`descent_step_size` from noise to data."""
        return math.ceil(round(1 / (1 - self.decay_start), 9))

    def magnitude(self, interpolation: Tensor) -> Tensor:
        r""":math:`c(\gamma) = \lambda \min(1, (1 - \gamma)/(1 - a))`, element-wise, for :math:`\gamma \in [0, 1]`."""
        return self.gradient_multiplier * torch.clamp((1 - interpolation) / (1 - self.decay_start), max=1.0)

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset({InterpolatedGradients})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        inputs = batch[InterpolatedGradients]
        scale = self.magnitude(inputs.interpolation).reshape(-1, *([1] * (inputs.data.dim() - 1)))
        target = ((inputs.noise - inputs.data) * scale).flatten(1)
        gradient = inputs.gradient.flatten(1)
        loss = (gradient - target).pow(2).sum(1).mean()
        return loss, {"gradient_norm": gradient.detach().norm(dim=1).mean(),
                      "target_norm": target.detach().norm(dim=1).mean()}

    def extra_repr(self) -> str:
        return f"gradient_multiplier={self.gradient_multiplier}, decay_start={self.decay_start}"
