"""Contrastive divergence: the maximum-likelihood gradient of an EBM."""

from __future__ import annotations

from torch import Tensor

from .base import EnergyBatch, Loss


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
    >>> from ebmlib.losses import EnergyBatch
    >>> loss, metrics = ContrastiveDivergence()(
    ...     EnergyBatch(positive_energy=torch.tensor([-1.0, -3.0]), negative_energy=torch.tensor([2.0])))
    >>> loss, metrics["energy_gap"]
    (tensor(-4.), tensor(4.))
    """

    def __init__(self, conditional: bool = False) -> None:
        super().__init__()
        self.conditional = conditional
        prefix = "conditional_" if conditional else ""
        self.fields = (prefix + "positive_energy", prefix + "negative_energy")

    def needs(self) -> frozenset[str]:
        return frozenset(self.fields)

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        name = type(self).__name__
        positive = batch.get(self.fields[0], name).mean()
        negative = batch.get(self.fields[1], name).mean()
        metrics = {
            "positive_energy": positive.detach(),
            "negative_energy": negative.detach(),
            "energy_gap": (negative - positive).detach(),
        }
        return positive - negative, metrics

    def extra_repr(self) -> str:
        return f"conditional={self.conditional}"
