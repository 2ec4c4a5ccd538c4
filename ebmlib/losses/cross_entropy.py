"""Cross-entropy on the classifier's logits: the log p(y|x) term of JEM."""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F

from .base import Classification, EnergyBatch, Loss, LossInput


class CrossEntropy(Loss):
    r"""Classification loss :math:`\mathcal{L} = -\operatorname{mean}\log\operatorname{softmax}(f(x^+))[y^+]`.

    Metrics: ``accuracy`` of the argmax prediction.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.losses import Classification, EnergyBatch
    >>> batch = EnergyBatch(Classification(logits=torch.tensor([[2.0, 0.0]]), labels=torch.tensor([0])))
    >>> loss, metrics = CrossEntropy()(batch)
    >>> round(loss.item(), 4), metrics["accuracy"]
    (0.1269, tensor(1.))
    """

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset({Classification})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        logits, labels = batch[Classification].logits, batch[Classification].labels
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(1) == labels).float().mean()
        return loss, {"accuracy": accuracy}
