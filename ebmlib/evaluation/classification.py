"""Classification metrics: accuracy and expected calibration error."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


@torch.no_grad()
def batched(function: Callable[[Tensor], Tensor], x: Tensor, batch_size: int = 500) -> Tensor:
    """``function`` applied to ``x`` in chunks of ``batch_size`` along the first dimension, concatenated.

    Examples
    --------
    >>> batched(lambda t: 2 * t, torch.arange(5.0), batch_size=2)
    tensor([0., 2., 4., 6., 8.])
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    return torch.cat([function(chunk) for chunk in x.split(batch_size)])


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    r"""Fraction of rows whose argmax is the label: :math:`\frac1N \sum_i [\arg\max_k f_{ik} = y_i]`.

    Parameters
    ----------
    logits : Tensor, shape ``(N, K)``
        Logits or probabilities.
    labels : Tensor of int64, shape ``(N,)``

    Returns
    -------
    Tensor
        Scalar in ``[0, 1]``: the share of rows whose largest entry is at the label.

    Examples
    --------
    >>> accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0]))
    tensor(0.5000)
    """
    _check_predictions(logits, labels, "logits")
    return (logits.argmax(dim=1) == labels).float().mean()


def expected_calibration_error(probabilities: Tensor, labels: Tensor, n_bins: int = 15) -> Tensor:
    r"""Expected calibration error of the top-class confidence, with equal-width bins.

    With confidence :math:`c_i = \max_k p_{ik}` and bins
    :math:`B_b = \{i : c_i \in ((b-1)/M, b/M]\}`, :math:`b = 1..M`:

    .. math::

        \mathrm{ECE} = \sum_{b=1}^{M} \frac{|B_b|}{N}
            \Big|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\Big|,

    the gap between how often the model is right and how sure it is, 0 for a
    perfectly calibrated model.

    Parameters
    ----------
    probabilities : Tensor, shape ``(N, K)``
        Predicted class probabilities (rows sum to 1).
    labels : Tensor of int64, shape ``(N,)``
    n_bins : int
        :math:`M`.

    Returns
    -------
    Tensor
        Scalar in ``[0, 1]``: the gap between confidence and accuracy, averaged over the bins by their counts.

    Examples
    --------
    >>> p = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    >>> expected_calibration_error(p, torch.tensor([0, 0, 0, 1]))  # (2*|1-0.9| + 2*|0.5-0.6|)/4
    tensor(0.1000)
    """
    _check_predictions(probabilities, labels, "probabilities")
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).to(probabilities.dtype)
    bins = (confidence * n_bins).ceil().long().clamp(1, n_bins) - 1  # bin b holds ((b-1)/M, b/M]
    count = torch.zeros(n_bins, dtype=probabilities.dtype, device=probabilities.device)
    count = count.index_add(0, bins, torch.ones_like(confidence))
    correct_sum = torch.zeros_like(count).index_add(0, bins, correct)
    confidence_sum = torch.zeros_like(count).index_add(0, bins, confidence)
    return (correct_sum - confidence_sum).abs().sum() / labels.shape[0]


def _check_predictions(predictions: Tensor, labels: Tensor, name: str) -> None:
    if predictions.dim() != 2 or labels.shape != (predictions.shape[0],) or predictions.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (N, K) and labels shape (N,) with N > 0, "
            f"got {tuple(predictions.shape)} and {tuple(labels.shape)}"
        )
