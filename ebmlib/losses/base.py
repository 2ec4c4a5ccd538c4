"""The loss interface: typed inputs computed once per step in, a scalar loss and metrics out.

What a loss reads is declared as *types*: each kind of input is a small frozen
dataclass (:class:`Energies`, :class:`ConditionalEnergies`,
:class:`Classification`, or one a new loss defines next to itself), a loss lists
the kinds it needs in :meth:`Loss.needs`, and reads them from the
:class:`EnergyBatch` by type, ``batch[Energies].positive``, so a misspelt kind
or field is a ``NameError`` or a mypy error, never a silent ``None``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TypeVar

from torch import Tensor, nn


class LossInput:
    """Base of the typed inputs a loss reads; each subclass is a frozen dataclass of tensors.

    A recipe computes one instance of every kind its loss :meth:`~Loss.needs`
    and hands them over in an :class:`EnergyBatch`. A new loss that needs new
    inputs defines a new subclass next to itself.

    Examples
    --------
    >>> import torch
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class NoisyScores(LossInput):
    ...     noise: torch.Tensor
    ...     score: torch.Tensor
    >>> NoisyScores(torch.zeros(2, 3), torch.ones(2, 3)).score.shape
    torch.Size([2, 3])
    """


@dataclass(frozen=True)
class Energies(LossInput):
    r"""Energies of data and of model samples: :math:`E(x^+)` and :math:`E(x^-)`.

    Attributes
    ----------
    positive : Tensor, shape ``(B,)``
        :math:`E(x^+)` of the data.
    negative : Tensor, shape ``(M,)``
        :math:`E(x^-)` of model samples (unconditional chains).

    Examples
    --------
    >>> import torch
    >>> Energies(positive=torch.tensor([-1.0]), negative=torch.tensor([2.0])).negative
    tensor([2.])
    """

    positive: Tensor
    negative: Tensor


@dataclass(frozen=True)
class ConditionalEnergies(Energies):
    r"""Class-conditional energies :math:`E(x^+, y^+)` and :math:`E(x^-, y^-)`.

    The negatives come from chains run for labels :math:`y^-` drawn uniformly.

    Attributes
    ----------
    positive : Tensor, shape ``(B,)``
        :math:`E(x^+, y^+)` of the data and their labels.
    negative : Tensor, shape ``(M,)``
        :math:`E(x^-, y^-)` of class-conditional chains.

    Examples
    --------
    >>> import torch
    >>> ConditionalEnergies(positive=torch.zeros(3), negative=torch.ones(2)).positive.shape
    torch.Size([3])
    """


@dataclass(frozen=True)
class Classification(LossInput):
    """A classifier's logits on the data and the data's labels.

    Attributes
    ----------
    logits : Tensor, shape ``(B, K)``
    labels : Tensor of int64, shape ``(B,)``

    Examples
    --------
    >>> import torch
    >>> Classification(logits=torch.zeros(2, 3), labels=torch.tensor([0, 2])).labels
    tensor([0, 2])
    """

    logits: Tensor
    labels: Tensor


InputT = TypeVar("InputT", bound=LossInput)


class EnergyBatch:
    """Everything a step's losses read, computed once per training step: one input of each kind.

    ``batch[Kind]`` returns the input of that type (typed as ``Kind`` for mypy),
    or raises a ``ValueError`` naming the kind and what the batch holds.

    Parameters
    ----------
    *inputs : LossInput
        At most one of each type.

    Examples
    --------
    >>> import torch
    >>> batch = EnergyBatch(Energies(positive=torch.tensor([-1.0]), negative=torch.tensor([2.0])))
    >>> batch[Energies].positive
    tensor([-1.])
    >>> Classification in batch
    False
    >>> batch[Classification]
    Traceback (most recent call last):
    ...
    ValueError: a loss needs Classification, which the recipe did not compute (has: Energies)
    """

    def __init__(self, *inputs: LossInput) -> None:
        self._inputs: dict[type[LossInput], LossInput] = {}
        for value in inputs:
            if not isinstance(value, LossInput):
                raise TypeError(f"EnergyBatch holds LossInput instances, got {type(value).__name__}")
            if type(value) in self._inputs:
                raise ValueError(f"EnergyBatch got two inputs of type {type(value).__name__}")
            self._inputs[type(value)] = value

    def __getitem__(self, kind: type[InputT]) -> InputT:
        value = self._inputs.get(kind)
        if value is None:
            has = ", ".join(k.__name__ for k in self._inputs) or "nothing"
            raise ValueError(f"a loss needs {kind.__name__}, which the recipe did not compute (has: {has})")
        assert isinstance(value, kind)
        return value

    def __contains__(self, kind: object) -> bool:
        return kind in self._inputs

    def kinds(self) -> frozenset[type[LossInput]]:
        """The types of the inputs held."""
        return frozenset(self._inputs)

    def __repr__(self) -> str:
        return f"EnergyBatch({', '.join(k.__name__ for k in self._inputs)})"


class Loss(nn.Module, ABC):
    """Abstract training loss.

    Subclasses implement :meth:`forward`, reading their inputs from the
    :class:`EnergyBatch` by type, and override :meth:`needs` if they read
    other inputs than :class:`Energies`, so a recipe computes (and samples)
    only what is needed.

    Examples
    --------
    >>> import torch
    >>> class MeanEnergy(Loss):
    ...     def needs(self):
    ...         return frozenset({Energies})
    ...     def forward(self, batch):
    ...         loss = batch[Energies].positive.mean()
    ...         return loss, {"mean_energy": loss.detach()}
    >>> batch = EnergyBatch(Energies(positive=torch.tensor([1.0, 3.0]), negative=torch.tensor([0.0])))
    >>> MeanEnergy()(batch)
    (tensor(2.), {'mean_energy': tensor(2.)})
    """

    @abstractmethod
    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar loss (differentiable) and a dict of detached scalar metric tensors."""

    def needs(self) -> frozenset[type[LossInput]]:
        """The kinds of :class:`LossInput` this loss reads."""
        return frozenset({Energies})
