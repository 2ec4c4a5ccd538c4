"""The recipe protocol: everything a trainer may ask of a training procedure."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Set
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_generator, check_optimizer_trains
from ..losses import EnergyBatch, Loss, LossInput
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
    :meth:`data_parallel_modules` (:class:`~ebmlib.recipes.base.LossRecipe` implements them for a
    model trained on a loss by one optimizer). Everything random in a step draws from the
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


class LossRecipe(Recipe):
    r"""A recipe that trains an energy model on a :class:`~ebmlib.losses.Loss` with one optimizer.

    The skeleton every recipe family of ebmlib shares (contrastive, score
    matching, noise-contrastive); one :meth:`training_step` on data :math:`x`
    (labels :math:`y`) is

    1. ``check_generator(generator)`` and :meth:`check_inputs` ``(x, y)``;
    2. ``needs = loss.needs()``, then :meth:`prepare_data` (``x`` itself unless a
       subclass changes it, e.g. adds noise);
    3. ``loss(loss_inputs(needs, x, y, generator))``: :meth:`loss_inputs` computes one
       :class:`~ebmlib.losses.LossInput` of every kind in ``needs``;
    4. :meth:`~ebmlib.recipes.Recipe.minimize`: one step of ``optimizer``.

    A subclass implements :meth:`loss_inputs` (and :meth:`check_inputs`); a loss
    that needs a new kind of input is served by overriding :meth:`loss_inputs`
    alone. ``optimizers()`` is ``[optimizer]`` and ``data_parallel_modules()``
    ``[model]``.

    Parameters
    ----------
    model : EnergyModel
        Checked first (``check_energy_model``): a plain network is refused with a ``TypeError``.
    optimizer : torch.optim.Optimizer
        Checked next: a ``TypeError`` for anything else, a ``ValueError`` if it
        leaves out a trainable parameter of ``model``.
    loss : Loss

    Examples
    --------
    Negatives drawn from a standard Gaussian instead of the model:

    >>> from ebmlib.losses import ContrastiveDivergence, Energies
    >>> from ebmlib.models import MLP, NetworkEnergy
    >>> class AgainstNoise(LossRecipe):
    ...     def loss_inputs(self, needs, x, y, generator):
    ...         self.check_computable(self.loss, needs, {Energies})
    ...         noise = torch.randn(x.shape, generator=generator)
    ...         return EnergyBatch(Energies(*self.model(torch.cat([x, noise])).split(len(x))))
    >>> model = NetworkEnergy(MLP(2, 1, hidden=8))
    >>> recipe = AgainstNoise(model, torch.optim.SGD(model.parameters(), lr=0.1), ContrastiveDivergence())
    >>> sorted(recipe.training_step(torch.randn(4, 2), generator=torch.Generator().manual_seed(0)))
    ['energy_gap', 'loss', 'negative_energy', 'positive_energy']
    """

    def __init__(self, model: EnergyModel, optimizer: torch.optim.Optimizer, loss: Loss) -> None:
        super().__init__()
        check_energy_model(model)
        check_optimizer_trains(optimizer, model)
        self.model = model
        self.optimizer = optimizer
        self.loss = loss

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """``[optimizer]``."""
        return [self.optimizer]

    def data_parallel_modules(self) -> list[nn.Module]:
        """``[model]``."""
        return [self.model]

    def training_step(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Check the inputs, compute what the loss needs (:meth:`prepare_data`, :meth:`loss_inputs`) and step.

        Returns
        -------
        dict of str to Tensor
            ``loss`` and the loss's metrics, as detached scalar tensors.
        """
        check_generator(generator)
        self.check_inputs(x, y)
        loss = self.active_loss
        needs = loss.needs()
        x = self.prepare_data(needs, x, y, generator)
        value, metrics = loss(self.loss_inputs(needs, x, y, generator))
        return self.minimize(value, metrics)

    @property
    def active_loss(self) -> Loss:
        """Which loss the next :meth:`training_step` minimises: ``loss``, unless a recipe with phases says otherwise."""
        return self.loss

    def prepare_data(
        self, needs: frozenset[type[LossInput]], x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> Tensor:
        """The data the loss inputs are computed from, once the loss's ``needs`` are known: ``x`` itself here."""
        return x

    @abstractmethod
    def loss_inputs(
        self, needs: frozenset[type[LossInput]], x: Tensor, y: Tensor | None, generator: torch.Generator | None
    ) -> EnergyBatch:
        """One input of every kind in ``needs``, computed from data ``x`` (labels ``y``) and ``generator``.

        Raises
        ------
        ValueError
            For a kind this recipe cannot compute (:meth:`~ebmlib.recipes.Recipe.check_computable` names it).
        """


class StepCountingRecipe(LossRecipe):
    """A :class:`~ebmlib.recipes.base.LossRecipe` that counts its training steps in ``steps_taken``.

    Put it before the recipe it counts the steps of (``class JEM(StepCountingRecipe, EBM)``): its
    :meth:`training_step` is that recipe's, then ``steps_taken += 1``. The count is saved under the key
    ``steps_taken`` (a tensor), so a resumed run goes on from the same step.
    """

    steps_taken: int = 0
    """Training steps taken (a Python int, saved in ``state_dict`` as a tensor)."""

    def training_step(
        self, x: Tensor, y: Tensor | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The recipe's training step, counted in ``steps_taken``."""
        metrics = super().training_step(x, y, generator)
        self.steps_taken += 1
        return metrics

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "steps_taken"] = torch.tensor(self.steps_taken)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        if prefix + "steps_taken" in state_dict:
            self.steps_taken = int(state_dict.pop(prefix + "steps_taken"))
        super()._load_from_state_dict(state_dict, prefix, *args)


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
