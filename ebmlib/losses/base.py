"""The loss interface: one shared forward pass in, a scalar loss and metrics out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields

from torch import Tensor, nn


@dataclass
class EnergyBatch:
    """Everything losses read, computed once per training step by one forward pass.

    Attributes
    ----------
    positive_energy : Tensor, shape ``(B,)``
        :math:`E(x^+)` of the data.
    negative_energy : Tensor, shape ``(M,)``
        :math:`E(x^-)` of model samples (unconditional chains).
    logits : Tensor, shape ``(B, K)``
        Classifier logits of the data (classifier energies only).
    labels : Tensor of int64, shape ``(B,)``
        Labels of the data.
    conditional_positive_energy : Tensor, shape ``(B,)``
        :math:`E(x^+, y^+)`.
    conditional_negative_energy : Tensor, shape ``(M,)``
        :math:`E(x^-, y^-)` of class-conditional chains run for labels :math:`y^-`.

    Examples
    --------
    >>> import torch
    >>> batch = EnergyBatch(positive_energy=torch.tensor([-1.0]), negative_energy=torch.tensor([2.0]))
    >>> batch.get("positive_energy", "MyLoss")
    tensor([-1.])
    >>> batch.get("logits", "MyLoss")
    Traceback (most recent call last):
    ...
    ValueError: MyLoss needs EnergyBatch.logits, which was not computed (has: ['positive_energy', 'negative_energy'])
    """

    positive_energy: Tensor | None = None
    negative_energy: Tensor | None = None
    logits: Tensor | None = None
    labels: Tensor | None = None
    conditional_positive_energy: Tensor | None = None
    conditional_negative_energy: Tensor | None = None

    def get(self, name: str, loss: str) -> Tensor:
        """The field ``name``, or a ``ValueError`` saying that ``loss`` needs it."""
        value = getattr(self, name)
        if value is None:
            given = [f.name for f in fields(self) if getattr(self, f.name) is not None]
            raise ValueError(f"{loss} needs EnergyBatch.{name}, which was not computed (has: {given})")
        return value


class Loss(nn.Module, ABC):
    """Abstract training loss.

    Subclasses implement :meth:`forward` and, if they read other fields of
    :class:`EnergyBatch` than the two energies, override :meth:`needs`, so a
    recipe computes (and samples) only what is needed.

    Examples
    --------
    >>> import torch
    >>> class MeanEnergy(Loss):
    ...     def forward(self, batch):
    ...         loss = batch.get("positive_energy", "MeanEnergy").mean()
    ...         return loss, {"mean_energy": loss.detach()}
    ...     def needs(self):
    ...         return frozenset({"positive_energy"})
    >>> MeanEnergy()(EnergyBatch(positive_energy=torch.tensor([1.0, 3.0])))
    (tensor(2.), {'mean_energy': tensor(2.)})
    """

    @abstractmethod
    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar loss (differentiable) and a dict of detached scalar metric tensors."""

    def needs(self) -> frozenset[str]:
        """Fields of :class:`EnergyBatch` this loss reads."""
        return frozenset({"positive_energy", "negative_energy"})
