"""2D toy distributions with exact samplers, for tests, docs and quick experiments."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def _randn(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.randn(n, 2, generator=generator)


def eight_gaussians(
    n: int, generator: torch.Generator | None = None, radius: float = 2.0, std: float = 0.1
) -> Tensor:
    """Equal mixture of 8 Gaussians (std ``std``) on a circle of ``radius``; shape ``(n, 2)``.

    Examples
    --------
    >>> eight_gaussians(5, torch.Generator().manual_seed(0)).shape
    torch.Size([5, 2])
    """
    angle = torch.randint(8, (n,), generator=generator).float() * (2 * math.pi / 8)
    centers = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    return centers + std * _randn(n, generator)


def two_moons(n: int, generator: torch.Generator | None = None, std: float = 0.05) -> Tensor:
    """Two interleaved half circles with Gaussian noise ``std``, centred; shape ``(n, 2)``.

    Examples
    --------
    >>> two_moons(4, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 2])
    """
    t = math.pi * torch.rand(n, generator=generator)
    upper = torch.rand(n, generator=generator) < 0.5
    x = torch.where(upper, t.cos(), 1 - t.cos())
    y = torch.where(upper, t.sin(), 0.5 - t.sin())
    return torch.stack([x - 0.5, y - 0.25], dim=1) * 1.5 + std * _randn(n, generator)


def rings(
    n: int, generator: torch.Generator | None = None, radii: tuple[float, ...] = (0.75, 1.5, 2.25), std: float = 0.05
) -> Tensor:
    """Concentric circles of the given radii, points spread uniformly along each; shape ``(n, 2)``.

    Examples
    --------
    >>> rings(3, torch.Generator().manual_seed(0)).shape
    torch.Size([3, 2])
    """
    weights = torch.tensor(radii)  # pick rings in proportion to their length: uniform along the curve
    radius = weights[torch.multinomial(weights, n, replacement=True, generator=generator)]
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    return radius.unsqueeze(1) * torch.stack([angle.cos(), angle.sin()], dim=1) + std * _randn(n, generator)


def checkerboard(n: int, generator: torch.Generator | None = None, squares: int = 4, size: float = 4.0) -> Tensor:
    """Uniform on the dark squares of a ``squares x squares`` board of side ``size``; shape ``(n, 2)``.

    Examples
    --------
    >>> x = checkerboard(1000, torch.Generator().manual_seed(0))
    >>> bool(x.abs().max() <= 2.0)
    True
    """
    cell = size / squares
    col = torch.randint(squares, (n,), generator=generator)
    row = 2 * torch.randint(squares // 2, (n,), generator=generator) + (col % 2)
    offset = torch.rand(n, 2, generator=generator)
    return (torch.stack([col, row], dim=1).float() + offset) * cell - size / 2


TOY_DISTRIBUTIONS: dict[str, Callable[..., Tensor]] = {
    "eight_gaussians": eight_gaussians,
    "two_moons": two_moons,
    "rings": rings,
    "checkerboard": checkerboard,
}
"""Name -> sampler ``f(n, generator) -> (n, 2)`` of every toy distribution."""


def sample_toy(name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` exact samples of the toy distribution ``name``; shape ``(n, 2)``.

    Examples
    --------
    >>> sample_toy("rings", 10).shape
    torch.Size([10, 2])
    """
    if name not in TOY_DISTRIBUTIONS:
        raise ValueError(f"unknown toy distribution {name!r}; expected one of {sorted(TOY_DISTRIBUTIONS)}")
    if n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}")
    return TOY_DISTRIBUTIONS[name](n, generator)
