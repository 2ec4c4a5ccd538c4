"""The energy-model interface: ``x -> E(x)`` of shape ``(B,)``."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn


class EnergyModel(nn.Module, ABC):
    r"""Abstract energy-based model :math:`E_\theta(x)` or :math:`E_\theta(x, y)`.

    The density it defines is :math:`p_\theta(x) \propto \exp(-E_\theta(x))`.
    Subclasses implement :meth:`energy`; calling the model runs :meth:`energy`
    and checks that it returned one finite-shaped energy per sample.

    Examples
    --------
    >>> import torch
    >>> class Quadratic(EnergyModel):
    ...     def energy(self, x, y=None):
    ...         return 0.5 * x.pow(2).sum(dim=1)
    >>> model = Quadratic()
    >>> model(torch.ones(3, 2))
    tensor([1., 1., 1.])
    >>> model.score(torch.ones(1, 2))
    tensor([[-1., -1.]])
    """

    @abstractmethod
    def energy(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Energies of a batch.

        Parameters
        ----------
        x : Tensor, shape ``(B, *event_shape)``
            Inputs.
        y : Tensor of int64, shape ``(B,)``, optional
            Labels for a class-conditional energy :math:`E(x, y)`.

        Returns
        -------
        Tensor, shape ``(B,)``
        """

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """:meth:`energy`, checked by :func:`check_energy` to hold one energy per sample, shape ``(B,)``."""
        energy = self.energy(x, y)
        check_energy(energy, x, type(self).__name__)
        return energy

    def score(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        r"""Score :math:`-\nabla_x E(x)` by autograd; parameters get no gradient.

        Returns
        -------
        Tensor, same shape as ``x``
        """
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self(x, y).sum(), x)
        return -grad


def check_energy(energy: Tensor, x: Tensor, name: str = "energy model") -> None:
    """Raise ``ValueError`` unless ``energy`` holds one value per sample of ``x``.

    Checks shapes only, so it never synchronises with the device.

    Parameters
    ----------
    energy : Tensor
        What an energy model returned; must have shape ``(B,)``.
    x : Tensor, shape ``(B, *event_shape)``
        The model's input.
    name : str
        The model's name in the error message.

    Raises
    ------
    ValueError
        If ``energy`` is not a tensor of shape ``(B,)``; for ``(B, 1)`` the message
        suggests squeezing the last dimension.

    Examples
    --------
    >>> import torch
    >>> check_energy(torch.zeros(3), torch.zeros(3, 2))
    >>> check_energy(torch.zeros(3, 1), torch.zeros(3, 2), "MyModel")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: MyModel must return energies of shape (B,) = (3,) ... got (3, 1) (squeeze the last dimension)
    """
    expected = (x.shape[0],)
    if not isinstance(energy, Tensor) or tuple(energy.shape) != expected:
        got = tuple(energy.shape) if isinstance(energy, Tensor) else type(energy).__name__
        hint = " (squeeze the last dimension)" if got == (x.shape[0], 1) else ""
        raise ValueError(
            f"{name} must return energies of shape (B,) = {expected} for x of shape "
            f"{tuple(x.shape)}, got {got}{hint}"
        )
