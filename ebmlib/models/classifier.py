"""JEM's reading of a classifier as an energy model."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._checks import check_labels
from .base import EnergyModel


class ClassifierEnergy(EnergyModel):
    r"""Energy model from a classifier's logits :math:`f_\theta(x) \in \mathbb{R}^K`.

    .. math::

        E(x) = -\log \sum_{k} \exp f_\theta(x)[k], \qquad
        E(x, y) = -f_\theta(x)[y], \qquad
        p(y \mid x) = \operatorname{softmax}(f_\theta(x))[y].

    Parameters
    ----------
    network : nn.Module
        Maps ``(B, *event_shape)`` to logits ``(B, n_classes)``.
    n_classes : int
        Number of classes ``K``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = ClassifierEnergy(nn.Linear(2, 3), n_classes=3)
    >>> x = torch.randn(4, 2)
    >>> model(x).shape, model(x, torch.tensor([0, 1, 2, 0])).shape
    (torch.Size([4]), torch.Size([4]))
    >>> torch.allclose(model.class_probabilities(x).sum(dim=1), torch.ones(4))
    True
    """

    def __init__(self, network: nn.Module, n_classes: int) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        self.network = network
        self.n_classes = n_classes

    def logits(self, x: Tensor) -> Tensor:
        """Logits ``(B, n_classes)``; raises if the network returns another shape."""
        logits = self.network(x)
        expected = (x.shape[0], self.n_classes)
        if tuple(logits.shape) != expected:
            raise ValueError(
                f"network must return logits of shape (B, n_classes) = {expected}, "
                f"got {tuple(logits.shape)}"
            )
        return logits

    def energy_from_logits(self, logits: Tensor, y: Tensor | None = None) -> Tensor:
        """``-logsumexp(logits)`` or, with labels ``y``, ``-logits[y]``; shape ``(B,)``."""
        if y is None:
            return -torch.logsumexp(logits, dim=1)
        check_labels(y, logits.shape[0], self.n_classes)
        return -logits.gather(1, y.unsqueeze(1)).squeeze(1)

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.energy_from_logits(self.logits(x), y)

    def class_probabilities(self, x: Tensor) -> Tensor:
        """:math:`p(y \\mid x)`, shape ``(B, n_classes)``."""
        return torch.softmax(self.logits(x), dim=1)
