"""How far samples are from a reference sample in low dimension: the KL divergence of smoothed grid histograms."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor
from torch.nn import functional as F

_MAX_CELLS = 2**22  # the most cells grid_kl builds (bins ** D): 2048 x 2048 in 2D, 161 a side in 3D


def grid_kl(
    samples: Tensor,
    reference: Tensor,
    bins: int = 32,
    limits: tuple[float, float] | None = None,
    smoothing: float = 1.0,
    floor: float = 1e-3,
) -> float:
    r""":math:`\mathrm{KL}(p \,\Vert\, q)` of the reference's grid histogram :math:`p` from the samples' :math:`q`.

    Both point sets are binned on the same grid of ``bins`` cells per axis over
    :math:`[a, b]^D` (``limits``; points outside go to the border cells, so samples
    that fly off are counted, not dropped), each histogram is blurred by a Gaussian
    of standard deviation ``smoothing`` cells (mass leaving the grid is dropped)
    and normalised, and mixed with the uniform law on the :math:`K = \text{bins}^D`
    cells so that no cell is empty:

    .. math::

        \tilde p = (1 - \alpha)\, \frac{G * h_{\text{reference}}}{\lVert G * h_{\text{reference}} \rVert_1}
                   + \frac{\alpha}{K}, \qquad
        \tilde q = (1 - \alpha)\, \frac{G * h_{\text{samples}}}{\lVert G * h_{\text{samples}} \rVert_1}
                   + \frac{\alpha}{K}, \qquad
        \mathrm{KL} = \sum_{k=1}^{K} \tilde p_k \log \frac{\tilde p_k}{\tilde q_k},

    with :math:`\alpha` = ``floor``. The direction, data (reference) against samples,
    punishes mass of the data where the samples put none: a sampler that misses a mode
    scores high, one that blurs the modes a little less. A missed cell costs at most
    :math:`\log(K \tilde p_k / \alpha)` per unit of mass, so the measure stays finite.

    Two independent samples of one law score above 0 (the histograms' noise): for two
    samples of 2000 points of :func:`~ebmlib.data.toy.eight_gaussians` about 0.006 with the
    defaults (0.09 without smoothing); compare values measured with the same numbers of points, ``bins``,
    ``limits`` and ``smoothing``.

    Parameters
    ----------
    samples : Tensor, shape ``(N, D)``
        The points judged (e.g. model samples); finite.
    reference : Tensor, shape ``(M, D)``
        The points of the target law (e.g. data); finite.
    bins : int
        Cells per axis, ``>= 2``; at most :math:`2^{22}` cells in all (``bins ** D``).
    limits : (float, float), optional
        The grid's range :math:`[a, b]` on every axis. Default: the reference's
        smallest and largest coordinate, widened by 10% of their distance on each side.
    smoothing : float
        Standard deviation of the Gaussian blur, in cells (0: none); the kernel is cut at 3 standard deviations.
    floor : float
        Weight :math:`\alpha \in (0, 1)` of the uniform law mixed into both histograms.

    Returns
    -------
    float
        :math:`\mathrm{KL} \ge 0`, in nats; 0 when both sets bin alike.

    Raises
    ------
    ValueError
        For sets that are not ``(N, D)`` with the same ``D``, hold NaN or Inf, or a bad setting.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.data import eight_gaussians
    >>> data = eight_gaussians(2000, torch.Generator().manual_seed(0))
    >>> grid_kl(data, data)
    0.0
    >>> fresh = eight_gaussians(2000, torch.Generator().manual_seed(1))
    >>> half = data[data[:, 0] > 0.5]  # three of the eight modes
    >>> grid_kl(fresh, data, limits=(-3, 3)) < 0.05 < 1.0 < grid_kl(half, data, limits=(-3, 3))
    True
    """
    for name, points in (("samples", samples), ("reference", reference)):
        if not isinstance(points, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (N, D), got {type(points).__name__}")
        if points.dim() != 2 or points.shape[0] == 0 or not points.is_floating_point():
            raise ValueError(f"{name} must be a non-empty floating tensor of shape (N, D), got "
                             f"{tuple(points.shape)} of dtype {points.dtype}")
    if samples.shape[1] != reference.shape[1]:
        raise ValueError(f"samples and reference must have the same dimension D, got {tuple(samples.shape)} and "
                         f"{tuple(reference.shape)}")
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    dim = samples.shape[1]
    if bins**dim > _MAX_CELLS:
        raise ValueError(f"bins ** D = {bins}**{dim} cells is more than {_MAX_CELLS}: use fewer bins (or project "
                         "the points to fewer dimensions)")
    if isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real) or not 0 <= smoothing < math.inf:
        raise ValueError(f"smoothing must be a finite number of cells >= 0, got {smoothing!r}")
    if isinstance(floor, bool) or not isinstance(floor, numbers.Real) or not 0 < floor < 1:
        raise ValueError(f"floor must be a number in (0, 1), got {floor!r}")
    samples, reference = samples.detach().double().cpu(), reference.detach().double().cpu()
    for name, points in (("samples", samples), ("reference", reference)):
        if not bool(torch.isfinite(points).all()):
            raise ValueError(f"{name} contain NaN or Inf values")
    low, high = _grid_limits(reference, limits)
    p = _smoothed_histogram(reference, bins, low, high, float(smoothing))
    q = _smoothed_histogram(samples, bins, low, high, float(smoothing))
    cells = p.numel()
    p = (1 - floor) * p + floor / cells
    q = (1 - floor) * q + floor / cells
    return max(float((p * (p / q).log()).sum()), 0.0)


def _grid_limits(reference: Tensor, limits: tuple[float, float] | None) -> tuple[float, float]:
    if limits is None:
        low, high = float(reference.min()), float(reference.max())
        margin = 0.1 * (high - low) if high > low else 1.0
        return low - margin, high + margin
    if (not isinstance(limits, (tuple, list)) or len(limits) != 2
            or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in limits)):
        raise ValueError(f"limits must be None or a pair of numbers (low, high), got {limits!r}")
    low, high = float(limits[0]), float(limits[1])
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"limits must be finite with low < high, got {limits}")
    return low, high


def _smoothed_histogram(points: Tensor, bins: int, low: float, high: float, smoothing: float) -> Tensor:
    """Normalised counts on the grid, shape ``(bins,) * D``, blurred along each axis."""
    dim = points.shape[1]
    cell = ((points - low) / (high - low) * bins).floor().clamp(0, bins - 1).long()
    strides = torch.tensor([bins ** (dim - 1 - d) for d in range(dim)])
    counts = torch.bincount((cell * strides).sum(1), minlength=bins**dim).double().reshape((bins,) * dim)
    if smoothing > 0:
        radius = math.ceil(3 * smoothing)
        offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
        kernel = torch.exp(-0.5 * (offsets / smoothing) ** 2)
        kernel = (kernel / kernel.sum()).reshape(1, 1, -1)
        for axis in range(dim):
            moved = counts.movedim(axis, -1)
            shape = moved.shape
            blurred = F.conv1d(moved.reshape(-1, 1, bins), kernel, padding=radius).reshape(shape)
            counts = blurred.movedim(-1, axis)
    return counts / counts.sum()
