"""Contrastive divergence: the maximum-likelihood gradient of an EBM."""

from __future__ import annotations

from torch import Tensor

from .base import ConditionalEnergies, Energies, EnergyBatch, Loss, LossInput


class ContrastiveDivergence(Loss):
    r"""Contrastive divergence :math:`\mathcal{L} = \operatorname{mean} E(x^+) - \operatorname{mean} E(x^-)`.

    Its parameter gradient is the (negated) log-likelihood gradient when
    :math:`x^-` are samples of the model. With ``conditional=True`` it uses
    :math:`E(x, y)` on both sides, the :math:`\log p(x \mid y)` term of JEM.

    Metrics: ``positive_energy``, ``negative_energy`` (means) and
    ``energy_gap`` = mean :math:`E(x^-)` - mean :math:`E(x^+)`.

    Parameters
    ----------
    conditional : bool
        Read the class-conditional energies.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.losses import Energies, EnergyBatch
    >>> loss, metrics = ContrastiveDivergence()(
    ...     EnergyBatch(Energies(positive=torch.tensor([-1.0, -3.0]), negative=torch.tensor([2.0]))))
    >>> loss, metrics["energy_gap"]
    (tensor(-4.), tensor(4.))
    """

    def __init__(self, conditional: bool = False) -> None:
        super().__init__()
        self.conditional = conditional
        self.kind: type[Energies] = ConditionalEnergies if conditional else Energies

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset({self.kind})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        energies = batch[self.kind]
        positive, negative = energies.positive.mean(), energies.negative.mean()
        metrics = {
            "positive_energy": positive.detach(),
            "negative_energy": negative.detach(),
            "energy_gap": (negative - positive).detach(),
        }
        return positive - negative, metrics

    def extra_repr(self) -> str:
        return f"conditional={self.conditional}"
