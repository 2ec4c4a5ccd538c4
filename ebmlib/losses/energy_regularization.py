"""L2 penalty on energies, which keeps their scale from drifting."""

from __future__ import annotations

from torch import Tensor

from .base import EnergyBatch, Loss


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
    >>> from ebmlib.losses import EnergyBatch
    >>> EnergyRegularization()(EnergyBatch(positive_energy=torch.tensor([1.0, 3.0]),
    ...                                    negative_energy=torch.tensor([2.0])))[0]
    tensor(9.)
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
        positive = batch.get(self.fields[0], name)
        negative = batch.get(self.fields[1], name)
        loss = positive.pow(2).mean() + negative.pow(2).mean()
        return loss, {"energy_l2": loss.detach()}

    def extra_repr(self) -> str:
        return f"conditional={self.conditional}"
