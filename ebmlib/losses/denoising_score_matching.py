"""Denoising score matching (Vincent, 2011), with one noise level or several (Song & Ermon, 2019)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import EnergyBatch, Loss, LossInput


@dataclass(frozen=True)
class NoisyScores(LossInput):
    r"""The model's score at data perturbed by Gaussian noise: :math:`s_\theta(x + \sigma\epsilon)`.

    Attributes
    ----------
    noise : Tensor, shape ``(B, *event_shape)``
        :math:`\epsilon \sim \mathcal{N}(0, I)`.
    noise_std : Tensor, shape ``(B,)``
        :math:`\sigma` of each sample (one level, or a level drawn per sample).
    score : Tensor, shape ``(B, *event_shape)``
        :math:`s_\theta(x + \sigma\epsilon) = -\nabla_x E_\theta(x + \sigma\epsilon)`,
        differentiable in the parameters.

    Examples
    --------
    >>> import torch
    >>> NoisyScores(noise=torch.zeros(4, 2), noise_std=torch.full((4,), 0.1), score=torch.ones(4, 2)).score.shape
    torch.Size([4, 2])
    """

    noise: Tensor
    noise_std: Tensor
    score: Tensor


class DenoisingScoreMatching(Loss):
    r"""Denoising score matching: regress the model's score on the score of the noise kernel.

    .. math::

        \mathcal{L} = \frac{1}{B} \sum_{i=1}^{B} \tfrac12
            \big\lVert \sigma_i \, s_\theta(x_i + \sigma_i \epsilon_i) + \epsilon_i \big\rVert^2,
        \qquad s_\theta = -\nabla_x E_\theta, \quad \epsilon_i \sim \mathcal{N}(0, I).

    This is :math:`\sigma_i^2 \cdot \tfrac12 \lVert s_\theta(\tilde x_i) - \nabla \log
    q_\sigma(\tilde x_i \mid x_i) \rVert^2`, whose minimiser is the score of the noised
    data :math:`p * \mathcal{N}(0, \sigma^2 I)` (Vincent, 2011). With several levels
    (one :math:`\sigma_i` drawn per sample) the :math:`\sigma^2` weighting of Song &
    Ermon (2019) puts every level on the same scale; an energy that does not see
    :math:`\sigma` then learns the score of the mixture of the noised densities.
    The noise is drawn by the recipe
    (:class:`~ebmlib.recipes.ScoreMatchingEBM`), which needs no sampler.

    Metrics: ``score_norm``, the mean :math:`\lVert s_\theta(\tilde x)\rVert`.

    Examples
    --------
    A perfect score gives zero loss: for :math:`\tilde x = x + \sigma \epsilon` with
    :math:`x = 0`, the noised data's score at :math:`\tilde x` is :math:`-\epsilon / \sigma`.

    >>> import torch
    >>> from ebmlib.losses import EnergyBatch
    >>> noise, sigma = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)), torch.full((8,), 0.5)
    >>> loss, metrics = DenoisingScoreMatching()(EnergyBatch(NoisyScores(noise, sigma, -noise / 0.5)))
    >>> float(loss)
    0.0
    """

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset({NoisyScores})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        inputs = batch[NoisyScores]
        sigma = inputs.noise_std.reshape(-1, *([1] * (inputs.score.dim() - 1)))
        residual = (sigma * inputs.score + inputs.noise).flatten(1)
        loss = 0.5 * residual.pow(2).sum(1).mean()
        return loss, {"score_norm": inputs.score.detach().flatten(1).norm(dim=1).mean()}
