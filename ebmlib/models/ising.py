"""The Ising model on a periodic square lattice: a binary energy with known answers, for tests and examples."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_count, check_real
from .base import EnergyModel


class IsingEnergy(EnergyModel):
    r"""Ising energy of bits :math:`x \in \{0, 1\}^{R \times C}` on a periodic lattice, spins :math:`s = 2x - 1`.

    .. math::

        E(x) = -J \sum_{r, c} s_{r,c}\,\big(s_{r+1,c} + s_{r,c+1}\big) - h \sum_{r,c} s_{r,c},

    indices taken modulo the lattice size (periodic boundaries), so every nearest-neighbour bond
    counts once when both sides are at least 3 (with a side of 2 both bonds between the same two
    sites count). :math:`J` = ``coupling`` (:math:`J > 0` ferromagnetic; the infinite lattice
    orders above :math:`J_c = \tfrac12\log(1 + \sqrt2) \approx 0.4407` when :math:`h = 0`),
    :math:`h` = ``field``. :math:`p(x) \propto e^{-E(x)}`, so :math:`J` and :math:`h` already
    include the inverse temperature. The energy is a polynomial of :math:`x`, defined (and
    differentiable) for every real input, which gradient-based discrete samplers use.

    Parameters
    ----------
    size : int or (int, int)
        Lattice side, or ``(rows, columns)``; each at least 2.
    coupling : float
        :math:`J`, finite.
    field : float
        :math:`h`, finite.

    Examples
    --------
    >>> import torch
    >>> model = IsingEnergy(3, coupling=1.0, field=0.5)
    >>> model(torch.ones(2, 3, 3))  # all spins up: 18 bonds and 9 spins
    tensor([-22.5000, -22.5000])
    >>> model(torch.zeros(1, 1, 3, 3))  # any shape with 9 entries per sample, read row by row
    tensor([-13.5000])
    """

    coupling: Tensor
    field: Tensor

    def __init__(self, size: int | tuple[int, int], coupling: float = 0.3, field: float = 0.0) -> None:
        super().__init__()
        sides = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
        if len(sides) != 2:
            raise ValueError(f"size must be an int or a pair (rows, columns), got {size!r}")
        self.rows, self.columns = (check_count(side, "size", minimum=2) for side in sides)
        self.register_buffer("coupling", torch.tensor(check_real(coupling, "coupling")))
        self.register_buffer("field", torch.tensor(check_real(field, "field")))

    @property
    def n_sites(self) -> int:
        """Number of sites, ``rows * columns``."""
        return self.rows * self.columns

    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if y is not None:
            raise ValueError("IsingEnergy is unconditional: pass y=None")
        if x[0].numel() != self.n_sites:
            raise ValueError(f"x must hold rows * columns = {self.n_sites} values per sample for a "
                             f"{self.rows}x{self.columns} lattice, got shape {tuple(x.shape)}")
        spins = 2 * x.reshape(x.shape[0], self.rows, self.columns) - 1
        neighbours = spins.roll(1, dims=1) + spins.roll(1, dims=2)
        coupling, field = self.coupling.to(x.dtype), self.field.to(x.dtype)
        return -coupling * (spins * neighbours).sum((1, 2)) - field * spins.sum((1, 2))
