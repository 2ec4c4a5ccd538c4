"""L2 penalty on energies, which keeps their scale from drifting."""

from __future__ import annotations

from torch import Tensor

from .base import ConditionalEnergies, Energies, EnergyBatch, Loss, LossInput


class EnergyRegularization(Loss):
    r"""Energy magnitude penalty :math:`\mathcal{L} = \operatorname{mean} E(x^+)^2 + \operatorname{mean} E(x^-)^2`.

    Weighted by :math:`\alpha` in a :class:`~ebmlib.losses.WeightedSum`, this is
    the :math:`\alpha\,(E(x^+)^2 + E(x^-)^2)` term of Du & Mordatch (2019), which
    stops CD from pushing the energies of both sides towards infinity.

    Parameters
    ----------
    conditional : bool
        Penalise the class-conditional energies instead.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.losses import Energies, EnergyBatch
    >>> EnergyRegularization()(EnergyBatch(Energies(positive=torch.tensor([1.0, 3.0]),
    ...                                             negative=torch.tensor([2.0]))))[0]
    tensor(9.)
    """

    def __init__(self, conditional: bool = False) -> None:
        super().__init__()
        self.conditional = conditional
        self.kind: type[Energies] = ConditionalEnergies if conditional else Energies

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset({self.kind})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        energies = batch[self.kind]
        loss = energies.positive.pow(2).mean() + energies.negative.pow(2).mean()
        return loss, {"energy_l2": loss.detach()}

    def extra_repr(self) -> str:
        return f"conditional={self.conditional}"
