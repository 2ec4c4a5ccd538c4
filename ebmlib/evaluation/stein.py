"""Kernel Stein discrepancy: how far samples are from an energy model's law, using only its score."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._checks import check_batch, check_positive
from ..models.base import check_energy


def kernel_stein_discrepancy(
    model: nn.Module,
    samples: Tensor,
    scale: float = 1.0,
    exponent: float = -0.5,
    unbiased: bool = False,
) -> Tensor:
    r"""Squared kernel Stein discrepancy of samples from :math:`p \propto e^{-E}`, with the IMQ kernel.

    With the score :math:`s(x) = -\nabla_x E(x)` (by autograd; :math:`\log Z` is never
    needed), the inverse multiquadric kernel
    :math:`k(x, y) = (c^2 + \lVert x - y\rVert^2)^{\beta}` and :math:`r = x - y`, the Stein kernel is

    .. math::

        u(x, y) = s(x)^\top s(y)\, k(x, y)
            + 2\beta\,(c^2 + \lVert r\rVert^2)^{\beta - 1}\,\big(s(y) - s(x)\big)^\top r
            - 2\beta D\,(c^2 + \lVert r\rVert^2)^{\beta - 1}
            - 4\beta(\beta - 1)\,(c^2 + \lVert r\rVert^2)^{\beta - 2}\,\lVert r\rVert^2,

    and, over samples :math:`x_1..x_n` in :math:`D` dimensions,

    .. math::

        \mathrm{KSD}^2 = \frac{1}{n^2} \sum_{i, j} u(x_i, x_j)
        \quad\text{or, unbiased,}\quad \frac{1}{n(n-1)} \sum_{i \ne j} u(x_i, x_j).

    Its expectation is 0 exactly when the samples come from :math:`p` (the V-statistic
    is then of order :math:`1/n`, the U-statistic centred on 0), and with
    :math:`c > 0, \beta \in (-1, 0)` it detects any other law (Gorham & Mackey 2017).
    Cost and memory grow as :math:`n^2`; a few thousand samples are fine.

    Parameters
    ----------
    model : nn.Module
        Energy model mapping ``(n, *event_shape)`` to energies ``(n,)``.
    samples : Tensor, shape ``(n, *event_shape)``
        ``n >= 2`` points; flattened to ``D`` features for the kernel.
    scale : float
        :math:`c > 0`; pick it near the spread of the data.
    exponent : float
        :math:`\beta \in (-1, 0)`.
    unbiased : bool
        Leave out the diagonal :math:`i = j` (the U-statistic, which may be negative).

    Returns
    -------
    Tensor
        Scalar in ``samples``' dtype (computed in float64).

    Examples
    --------
    Samples of the standard normal score lower than the same samples shifted by 1:

    >>> import torch
    >>> class StandardNormal(torch.nn.Module):
    ...     def forward(self, x):
    ...         return 0.5 * x.pow(2).sum(dim=1)
    >>> x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    >>> on_target = kernel_stein_discrepancy(StandardNormal(), x)
    >>> shifted = kernel_stein_discrepancy(StandardNormal(), x + 1.0)
    >>> bool(on_target < 0.02), bool(shifted > 0.2)
    (True, True)
    """
    check_batch(samples, "samples")
    if samples.shape[0] < 2:
        raise ValueError(f"samples must hold at least 2 points, got shape {tuple(samples.shape)}")
    check_positive(scale, "scale")
    if not -1.0 < exponent < 0.0:
        raise ValueError(f"exponent must lie in (-1, 0) for the IMQ kernel, got {exponent}")
    score = _score(model, samples).flatten(1).double()
    x = samples.detach().flatten(1).double()
    n, dim = x.shape
    squared_distance = (x.pow(2).sum(1)[:, None] + x.pow(2).sum(1)[None, :] - 2 * x @ x.T).clamp(min=0.0)
    base = scale**2 + squared_distance
    kernel = base.pow(exponent)
    score_dot_x = (score * x).sum(1)
    # (s(y) - s(x))^T (x - y) for every pair (i, j) = (x, y), expanded so no (n, n, D) tensor is built.
    score_difference_dot_r = (
        x @ score.T - score_dot_x[None, :] - score_dot_x[:, None] + score @ x.T
    )
    stein_kernel = (
        (score @ score.T) * kernel
        + 2 * exponent * base.pow(exponent - 1) * score_difference_dot_r
        - 2 * exponent * dim * base.pow(exponent - 1)
        - 4 * exponent * (exponent - 1) * base.pow(exponent - 2) * squared_distance
    )
    if unbiased:
        discrepancy = (stein_kernel.sum() - stein_kernel.diagonal().sum()) / (n * (n - 1))
    else:
        discrepancy = stein_kernel.mean()
    return discrepancy.to(samples.dtype)


def _score(model: nn.Module, x: Tensor) -> Tensor:
    """:math:`-\\nabla_x E(x)` by autograd, detached; the model's parameters get no gradient."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        energy = model(x)
        check_energy(energy, x, type(model).__name__)
        (grad,) = torch.autograd.grad(energy.sum(), x)
    return -grad.detach()
