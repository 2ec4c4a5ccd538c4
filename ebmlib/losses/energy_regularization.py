"""L2 penalty on energies, which keeps their scale from drifting."""

from __future__ import annotations

from torch import Tensor

from .._checks import check_positive
from .base import ConditionalEnergies, Energies, EnergyBatch, Loss, LossInput


class EnergyRegularization(Loss):
    r"""Energy magnitude penalty :math:`\mathcal{L} = \beta \overline{E(x^+)^2} + \overline{E(x^-)^2}` (row means).

    Weighted by :math:`\alpha` in a :class:`~ebmlib.losses.WeightedSum`, this is
    the :math:`\alpha\,(E(x^+)^2 + E(x^-)^2)` term of Du & Mordatch (2019), which
    stops CD from pushing the energies of both sides towards infinity
    (:math:`\beta = 1`).

    A larger :math:`\beta` (``positive_weight``) holds the data's energies nearer 0
    than the negatives'. That matters where nothing else fixes the level of the
    energy on each part of the data: with class-balanced chains
    (``JEM(unconditional_chains="mixture")``) the contrastive term compares every
    class's data with that class's own samples, so each class's energy offset is
    set mostly by this penalty, at about minus half that class's energy gap. The
    data of an easily modelled class (MNIST's 1s) then sit far below the others,
    and an image that resembles that class looks more likely than real images of
    every other class. Weighing the data side pins every class's data energies
    near 0, which keeps the energy comparable across classes.

    Parameters
    ----------
    conditional : bool
        Penalise the class-conditional energies instead.
    positive_weight : float
        :math:`\beta`, the weight of the data side relative to the negatives' (>= 0).

    Examples
    --------
    >>> import torch
    >>> from ebmlib.losses import Energies, EnergyBatch
    >>> EnergyRegularization()(EnergyBatch(Energies(positive=torch.tensor([1.0, 3.0]),
    ...                                             negative=torch.tensor([2.0]))))[0]
    tensor(9.)
    >>> EnergyRegularization(positive_weight=10.0)(EnergyBatch(Energies(positive=torch.tensor([1.0, 3.0]),
    ...                                                                 negative=torch.tensor([2.0]))))[0]
    tensor(54.)
    """

    def __init__(self, conditional: bool = False, positive_weight: float = 1.0) -> None:
        super().__init__()
        self.conditional = conditional
        self.positive_weight = check_positive(positive_weight, "positive_weight", allow_zero=True)
        self.kind: type[Energies] = ConditionalEnergies if conditional else Energies

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset({self.kind})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        energies = batch[self.kind]
        loss = self.positive_weight * energies.positive.pow(2).mean() + energies.negative.pow(2).mean()
        return loss, {"energy_l2": loss.detach()}

    def extra_repr(self) -> str:
        return f"conditional={self.conditional}, positive_weight={self.positive_weight}"
