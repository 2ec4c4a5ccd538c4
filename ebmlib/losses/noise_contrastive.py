"""Noise-contrastive estimation (Gutmann & Hyvärinen, 2010) with a learnable log-normaliser."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from .._checks import check_real
from .base import EnergyBatch, Loss, LossInput


@dataclass(frozen=True)
class NoiseContrast(LossInput):
    r"""Energies of data and of noise samples, and the noise density at both.

    Attributes
    ----------
    data_energy : Tensor, shape ``(B,)``
        :math:`E_\theta(x_i)` of the data.
    noise_energy : Tensor, shape ``(M,)``
        :math:`E_\theta(\tilde x_j)` of samples :math:`\tilde x_j \sim p_n`.
    data_log_noise_density : Tensor, shape ``(B,)``
        :math:`\log p_n(x_i)`.
    noise_log_noise_density : Tensor, shape ``(M,)``
        :math:`\log p_n(\tilde x_j)`.

    Examples
    --------
    >>> import torch
    >>> NoiseContrast(torch.zeros(4), torch.zeros(8), torch.zeros(4), torch.zeros(8)).noise_energy.shape
    torch.Size([8])
    """

    data_energy: Tensor
    noise_energy: Tensor
    data_log_noise_density: Tensor
    noise_log_noise_density: Tensor


class NoiseContrastiveEstimation(Loss):
    r"""Noise-contrastive estimation: tell data from noise by the log-ratio of model to noise density.

    The model is normalised by a learnable constant :math:`c` (``log_normalizer``),
    :math:`\log p_\theta(x) = -E_\theta(x) - c`, and with :math:`\nu = M / B` noise
    samples per data point the log-odds of "data" are
    :math:`h(u) = -E_\theta(u) - c - \log p_n(u) - \log \nu`. The loss is the
    logistic loss of that classifier,

    .. math::

        \mathcal{L}(\theta, c) = \frac{1}{B} \sum_{i=1}^{B} \log\big(1 + e^{-h(x_i)}\big)
            + \frac{1}{B} \sum_{j=1}^{M} \log\big(1 + e^{h(\tilde x_j)}\big),
        \qquad x_i \sim p_{\text{data}}, \ \tilde x_j \sim p_n.

    Its minimiser has :math:`e^{-E_\theta - c} = p_{\text{data}}` when the model can
    express it, so :math:`c` estimates :math:`\log Z_\theta = \log \int e^{-E_\theta}`
    (Gutmann & Hyvärinen, 2010). The noise is drawn by the recipe
    (:class:`~ebmlib.recipes.NoiseContrastiveEBM`); no sampler is run. :math:`c`
    is a parameter of this loss: the optimizer must train it with the model's.

    Metrics: ``log_normalizer`` (:math:`c`) and ``accuracy``, the fraction of data
    and noise samples the classifier :math:`h > 0` labels right.

    Parameters
    ----------
    log_normalizer : float
        Starting value of :math:`c`.

    Examples
    --------
    With :math:`E = 0`, :math:`c = 0` and data and noise equally likely under
    :math:`p_n`, :math:`h = 0` and the loss is :math:`2 \log 2`:

    >>> import torch
    >>> from ebmlib.losses import EnergyBatch
    >>> zeros = torch.zeros(4)
    >>> loss, metrics = NoiseContrastiveEstimation()(EnergyBatch(NoiseContrast(zeros, zeros, zeros, zeros)))
    >>> round(float(loss.detach()), 4), float(metrics["log_normalizer"])
    (1.3863, 0.0)
    """

    def __init__(self, log_normalizer: float = 0.0) -> None:
        super().__init__()
        self.log_normalizer = nn.Parameter(torch.tensor(check_real(log_normalizer, "log_normalizer")))

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset({NoiseContrast})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        inputs = batch[NoiseContrast]
        n_data, n_noise = inputs.data_energy.shape[0], inputs.noise_energy.shape[0]
        log_ratio = math.log(n_noise / n_data)
        data_odds = -inputs.data_energy - self.log_normalizer - inputs.data_log_noise_density - log_ratio
        noise_odds = -inputs.noise_energy - self.log_normalizer - inputs.noise_log_noise_density - log_ratio
        loss = (softplus(-data_odds).sum() + softplus(noise_odds).sum()) / n_data
        right = (data_odds > 0).sum() + (noise_odds <= 0).sum()
        metrics = {"log_normalizer": self.log_normalizer.detach().clone(),
                   "accuracy": right.detach().to(loss.dtype) / (n_data + n_noise)}
        return loss, metrics

    def extra_repr(self) -> str:
        return "log_normalizer: learnable"
