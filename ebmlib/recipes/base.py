"""The recipe protocol: everything a trainer may ask of a training procedure."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Set

import torch
from torch import Tensor, nn

from ..models import EnergyModel


class Recipe(nn.Module, ABC):
    r"""A training procedure: one optimisation step on a batch, and the state it keeps.

    The :class:`~ebmlib.training.Trainer`, the
    :class:`~ebmlib.training.DivergenceGuard`, multi-process training
    (:mod:`ebmlib.training.distributed`) and the Lightning adapter use a recipe
    only through these methods, never through its parts:

    ========================================  ==========================================================
    :meth:`training_step`                     one step on a batch; returns detached scalar metrics
    :meth:`optimizers`                        the optimizers it steps (saved in checkpoints; their
                                              learning rates are set by a schedule)
    ``state_dict`` / ``load_state_dict``      :class:`torch.nn.Module`'s: model, replay buffer, ...
    :meth:`restart_chains`                    start its sampling chains afresh (a no-op without chains)
    :meth:`data_parallel_modules`             the modules whose parameters are trained and kept equal
                                              over processes (gradients averaged)
    :meth:`check_inputs`                      raise (or warn) for data it cannot train on
    ========================================  ==========================================================

    A subclass implements :meth:`training_step`, :meth:`optimizers` and
    :meth:`data_parallel_modules`. Everything random in a step draws from the
    ``generator`` passed in, and no step reads a tensor's value on the host.

    Examples
    --------
    A recipe that fits a linear least-squares model (no chains to restart):

    >>> import torch
    >>> from torch import nn
    >>> class LeastSquares(Recipe):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.model = nn.Linear(2, 1)
    ...         self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
    ...     def training_step(self, x, y=None, generator=None):
    ...         loss = (self.model(x).squeeze(1) - x.sum(1)).pow(2).mean()
    ...         self.optimizer.zero_grad()
    ...         loss.backward()
    ...         self.optimizer.step()
    ...         return {"loss": loss.detach()}
    ...     def optimizers(self):
    ...         return [self.optimizer]
    ...     def data_parallel_modules(self):
    ...         return [self.model]
    >>> recipe = LeastSquares()
    >>> sorted(recipe.training_step(torch.randn(8, 2)))
    ['loss']
    >>> recipe.restart_chains()  # no chains: nothing to do
    """

    @abstractmethod
    def training_step(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """One optimisation step on a batch.

        Parameters
        ----------
        x : Tensor, shape ``(B, *event_shape)``
            Data, on the recipe's device.
        y : Tensor of int64, shape ``(B,)``, optional
            Labels.
        generator : torch.Generator, optional
            Source of every random draw of the step; on ``x``'s device.

        Returns
        -------
        dict of str to Tensor
            Detached scalar metrics (``"loss"`` among them), never read on the host here.
        """

    @abstractmethod
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The optimizers :meth:`training_step` steps, in a fixed order."""

    @abstractmethod
    def data_parallel_modules(self) -> list[nn.Module]:
        """The modules whose parameters are trained and averaged over processes (not buffers of chains)."""

    def minimize(self, loss: Tensor, metrics: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Zero the gradients, backpropagate ``loss`` and step every optimizer of :meth:`optimizers`.

        The last lines of a typical :meth:`training_step`; returns ``{"loss": loss, **metrics}``
        with ``loss`` detached.
        """
        for optimizer in self.optimizers():
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in self.optimizers():
            optimizer.step()
        return {"loss": loss.detach(), **metrics}

    def check_computable(self, loss: nn.Module, needs: Set[type], computable: Set[type]) -> None:
        """Raise a ``ValueError`` naming the input kinds in ``needs`` (of ``loss``) outside ``computable``."""
        missing = sorted(kind.__name__ for kind in needs - computable)
        if missing:
            raise ValueError(
                f"{type(loss).__name__} needs {', '.join(missing)}, which {type(self).__name__} does not compute "
                f"(it computes {', '.join(sorted(k.__name__ for k in computable))}); override loss_inputs to add them"
            )

    def restart_chains(self, generator: torch.Generator | None = None) -> None:
        """Start every sampling chain the recipe keeps afresh; a no-op for a recipe without chains."""

    def check_inputs(self, x: Tensor, y: Tensor | None = None) -> None:
        """Raise a clear error (or warn) for data this recipe cannot train on; accepts anything by default."""


def check_energy_model(model: object, name: str = "model") -> None:
    """Raise a ``TypeError`` unless ``model`` is an :class:`~ebmlib.models.EnergyModel`.

    A plain network would be trained on whatever it returns (``(B, 1)`` outputs, logits); the message says how to
    wrap it.

    Examples
    --------
    >>> check_energy_model(nn.Linear(2, 1))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: model must be an ebmlib.models.EnergyModel ..., got Linear: wrap the network in NetworkEnergy(...) ...
    """
    if not isinstance(model, EnergyModel):
        raise TypeError(
            f"{name} must be an ebmlib.models.EnergyModel (x -> energies of shape (B,)), got {type(model).__name__}: "
            "wrap the network in NetworkEnergy(network) (from ebmlib.models; its one output is the energy), or a "
            "classifier in ClassifierEnergy(network, n_classes=K)"
        )
