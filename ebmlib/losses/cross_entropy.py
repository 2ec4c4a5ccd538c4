"""Cross-entropy on the classifier's logits: the log p(y|x) term of JEM."""

from __future__ import annotations

from torch import Tensor
from torch.nn import functional as F

from .base import EnergyBatch, Loss


class CrossEntropy(Loss):
    r"""Classification loss :math:`\mathcal{L} = -\operatorname{mean}\log\operatorname{softmax}(f(x^+))[y^+]`.

    Metrics: ``accuracy`` of the argmax prediction.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.losses import EnergyBatch
    >>> loss, metrics = CrossEntropy()(EnergyBatch(logits=torch.tensor([[2.0, 0.0]]), labels=torch.tensor([0])))
    >>> round(loss.item(), 4), metrics["accuracy"]
    (0.1269, tensor(1.))
    """

    def needs(self) -> frozenset[str]:
        return frozenset({"logits", "labels"})

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        logits = batch.get("logits", "CrossEntropy")
        labels = batch.get("labels", "CrossEntropy")
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.detach().argmax(1) == labels).float().mean()
        return loss, {"accuracy": accuracy}
