"""Maximum mean discrepancy between two samples."""

from __future__ import annotations

import torch
from torch import Tensor


def mmd(x: Tensor, y: Tensor, bandwidths: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0)) -> Tensor:
    r"""Squared maximum mean discrepancy with a sum of Gaussian kernels (biased V-statistic).

    .. math::

        \mathrm{MMD}^2 = \overline{k(x, x')} + \overline{k(y, y')} - 2\,\overline{k(x, y)},
        \qquad k(a, b) = \sum_h \exp\!\big(-\lVert a - b\rVert^2 / (2h^2)\big).

    Parameters
    ----------
    x : Tensor, shape ``(N, D)``
    y : Tensor, shape ``(M, D)``
    bandwidths : tuple of float
        Kernel widths :math:`h`.

    Returns
    -------
    Tensor
        Scalar; 0 when the samples coincide.

    Examples
    --------
    >>> x = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    >>> float(mmd(x, x))
    0.0
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (N, D) and (M, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    xy = torch.cat([x, y]).double()
    squared = torch.cdist(xy, xy).pow(2)
    kernel = sum(torch.exp(-squared / (2 * h**2)) for h in bandwidths)
    assert isinstance(kernel, Tensor)
    n = x.shape[0]
    k_xx, k_yy, k_xy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return (k_xx.mean() + k_yy.mean() - 2 * k_xy.mean()).clamp(min=0.0).to(x.dtype)
