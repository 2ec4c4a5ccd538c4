"""The KL term of improved contrastive divergence (Du, Li, Tenenbaum & Mordatch, 2021)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import EnergyBatch, Loss, LossInput


@dataclass(frozen=True)
class SamplerEnergies(LossInput):
    r"""Energies, under frozen parameters, of samples that carry the gradient of the sampler's last steps.

    Attributes
    ----------
    frozen_energy : Tensor, shape ``(M,)``
        :math:`E_{\bar\theta}(x^-_\theta)`: the energy with its parameters
        detached (:math:`\bar\theta`), at samples :math:`x^-_\theta` whose last
        sampler steps were taken with the gradient kept, so the only parameter
        gradient is the one through :math:`x^-_\theta`.

    Examples
    --------
    >>> import torch
    >>> SamplerEnergies(frozen_energy=torch.zeros(5)).frozen_energy.shape
    torch.Size([5])
    """

    frozen_energy: Tensor


class SamplerKL(Loss):
    r"""The KL term of improved contrastive divergence: make the sampler's output have low energy.

    Contrastive divergence ignores that the samples :math:`x^- = q_\theta` depend on
    :math:`\theta` through the sampler. Du et al. (2021) add the missing gradient of
    :math:`\mathrm{KL}(q_\theta \,\Vert\, p_\theta)`, whose energy part is

    .. math::

        \mathcal{L}_{\mathrm{KL}} = \frac{1}{M} \sum_{j=1}^{M} E_{\bar\theta}\big(x^-_j(\theta)\big),
        \qquad x^-_j(\theta) = x_{K-k} \to \dots \to x_K \ \text{(the last } k
        \text{ steps, differentiated)},

    with :math:`\bar\theta` the parameters held fixed (stop-gradient): its
    gradient moves the *sampler* (through :math:`\nabla_x E_\theta` in its steps)
    toward low energy, never the energy itself. The entropy part of their KL is not
    included. Add it to :class:`~ebmlib.losses.ContrastiveDivergence` with
    :class:`~ebmlib.losses.WeightedSum`; the recipe
    :class:`~ebmlib.recipes.ImprovedContrastiveEBM` computes its input.

    Metrics: ``sampler_energy``, the mean :math:`E_{\bar\theta}(x^-)`.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.losses import EnergyBatch
    >>> SamplerKL()(EnergyBatch(SamplerEnergies(torch.tensor([1.0, 3.0]))))[0]
    tensor(2.)
    """

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset({SamplerEnergies})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        loss = batch[SamplerEnergies].frozen_energy.mean()
        return loss, {"sampler_energy": loss.detach()}
