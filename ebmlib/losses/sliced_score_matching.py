"""Sliced score matching (Song, Garg, Shi & Ermon, 2019): score matching along random directions."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import EnergyBatch, Loss, LossInput


@dataclass(frozen=True)
class SlicedScores(LossInput):
    r"""The model's score at the data and its Jacobian seen along a random direction :math:`v`.

    Attributes
    ----------
    projection : Tensor, shape ``(B, *event_shape)``
        :math:`v` with :math:`\mathbb{E}[v v^\top] = I` (Rademacher or Gaussian).
    score : Tensor, shape ``(B, *event_shape)``
        :math:`s_\theta(x) = -\nabla_x E_\theta(x)`, differentiable in the parameters.
    projected_jacobian : Tensor, shape ``(B,)``
        :math:`v^\top \nabla_x s_\theta(x)\, v`, differentiable in the parameters.

    Examples
    --------
    >>> import torch
    >>> SlicedScores(torch.ones(3, 2), torch.zeros(3, 2), torch.zeros(3)).projected_jacobian.shape
    torch.Size([3])
    """

    projection: Tensor
    score: Tensor
    projected_jacobian: Tensor


class SlicedScoreMatching(Loss):
    r"""Sliced score matching: Hyvärinen's score-matching objective with the trace estimated along :math:`v`.

    .. math::

        \mathcal{L} = \frac{1}{B} \sum_{i=1}^{B}
            v_i^\top \nabla_x s_\theta(x_i)\, v_i + \tfrac12 \big(v_i^\top s_\theta(x_i)\big)^2,
        \qquad s_\theta = -\nabla_x E_\theta,

    an unbiased estimate (over :math:`v`, :math:`\mathbb{E}[v v^\top] = I`) of
    :math:`\mathbb{E}_p\big[\operatorname{tr} \nabla_x s_\theta + \tfrac12 \lVert s_\theta \rVert^2\big]`,
    which equals the Fisher divergence :math:`\tfrac12 \mathbb{E}_p \lVert s_\theta - \nabla \log p\rVert^2`
    up to a constant (Song et al., 2019). With ``variance_reduced=True`` the second
    term is :math:`\tfrac12 \lVert s_\theta(x_i) \rVert^2`, its exact expectation
    (SSM-VR). No noise is added and no sampler is run: the recipe
    (:class:`~ebmlib.recipes.ScoreMatchingEBM`) computes :math:`v^\top \nabla_x s\, v`
    with one extra backward pass.

    Metrics: ``score_norm``, the mean :math:`\lVert s_\theta(x)\rVert`, and
    ``projected_jacobian``, the mean of :math:`v^\top \nabla_x s_\theta\, v`.

    Parameters
    ----------
    variance_reduced : bool
        Use :math:`\tfrac12 \lVert s \rVert^2` instead of :math:`\tfrac12 (v^\top s)^2`.

    Examples
    --------
    For :math:`E(x) = \lVert x \rVert^2 / 2` the score is :math:`-x` and its Jacobian
    :math:`-I`, so with :math:`v = (1, 1)` and :math:`x = (1, 0)` the loss is
    :math:`-2 + \tfrac12 (-1)^2`:

    >>> import torch
    >>> from ebmlib.losses import EnergyBatch
    >>> inputs = SlicedScores(torch.tensor([[1.0, 1.0]]), torch.tensor([[-1.0, 0.0]]), torch.tensor([-2.0]))
    >>> SlicedScoreMatching()(EnergyBatch(inputs))[0]
    tensor(-1.5000)
    """

    def __init__(self, variance_reduced: bool = False) -> None:
        super().__init__()
        self.variance_reduced = variance_reduced

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset({SlicedScores})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        inputs = batch[SlicedScores]
        score = inputs.score.flatten(1)
        if self.variance_reduced:
            quadratic = 0.5 * score.pow(2).sum(1)
        else:
            quadratic = 0.5 * (inputs.projection.flatten(1) * score).sum(1).pow(2)
        loss = (inputs.projected_jacobian + quadratic).mean()
        metrics = {"score_norm": score.detach().norm(dim=1).mean(),
                   "projected_jacobian": inputs.projected_jacobian.detach().mean()}
        return loss, metrics

    def extra_repr(self) -> str:
        return f"variance_reduced={self.variance_reduced}"
