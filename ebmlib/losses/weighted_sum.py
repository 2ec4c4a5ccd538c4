"""Weighted composition of losses that share one EnergyBatch."""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

from torch import Tensor, nn

from .base import EnergyBatch, Loss, LossInput


class WeightedSum(Loss):
    r""":math:`\mathcal{L} = \sum_i w_i \mathcal{L}_i` over named terms.

    Every term reads the same :class:`EnergyBatch`, so no term recomputes a
    forward pass. Terms with weight 0 are skipped (and their inputs not needed).
    Metrics: ``loss/<name>`` (each unweighted term) and ``<name>/<metric>``.

    The loss is the one writer of its weights: term :math:`i` weighs
    :math:`w_i = s_i \bar w_i` (:attr:`weights`), with :math:`\bar w_i` the full
    weight given here (:attr:`full_weights`) and :math:`s_i` a factor a schedule sets with
    :meth:`set_weight_scale` (1 until one does; e.g. a
    :class:`~ebmlib.training.TermWarmUp`). The factors are not in ``state_dict``:
    a schedule sets them again from the step it resumes at.

    Parameters
    ----------
    terms : mapping of str to (float, Loss)
        Name, weight and loss of each term.

    Examples
    --------
    >>> import torch
    >>> from ebmlib.losses import ContrastiveDivergence, Energies, EnergyBatch, EnergyRegularization
    >>> loss = WeightedSum({"cd": (1.0, ContrastiveDivergence()),
    ...                     "l2": (0.1, EnergyRegularization())})
    >>> value, metrics = loss(EnergyBatch(Energies(positive=torch.tensor([1.0]), negative=torch.tensor([2.0]))))
    >>> value, sorted(metrics)[:2]
    (tensor(-0.5000), ['cd/energy_gap', 'cd/negative_energy'])
    >>> loss.set_weight_scale("l2", 0.5)
    >>> dict(loss.weights), loss.full_weights["l2"]
    ({'cd': 1.0, 'l2': 0.05}, 0.1)
    """

    def __init__(self, terms: Mapping[str, tuple[float, Loss]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("WeightedSum needs at least one term")
        for name, (weight, loss) in terms.items():
            if not isinstance(loss, Loss):
                raise TypeError(f"term {name!r} must be an ebmlib Loss, got {type(loss).__name__}")
            if weight < 0:
                raise ValueError(f"weight of term {name!r} must be non-negative, got {weight}")
        if all(weight == 0 for weight, _ in terms.values()):
            raise ValueError("WeightedSum needs at least one term with a positive weight")
        self.terms: Mapping[str, Loss] = nn.ModuleDict({name: loss for name, (_, loss) in terms.items()})  # type: ignore[assignment]
        self._full_weights = {name: float(weight) for name, (weight, _) in terms.items()}
        self._weights = dict(self._full_weights)

    @property
    def weights(self) -> Mapping[str, float]:
        """The weight of each term now, its full weight times the factor a schedule set (read-only)."""
        return MappingProxyType(self._weights)

    @property
    def full_weights(self) -> Mapping[str, float]:
        """Each term's weight as given to the constructor (read-only)."""
        return MappingProxyType(self._full_weights)

    def set_weight_scale(self, name: str, factor: float) -> None:
        """Weigh term ``name`` by ``factor`` times its full weight from now on (0 leaves it out, 1 restores it).

        Raises
        ------
        ValueError
            For a name that is not a term, or a factor that is negative or not finite.
        """
        if name not in self._full_weights:
            raise ValueError(f"name must be a term of the loss ({', '.join(self._full_weights)}), got {name!r}")
        if not (math.isfinite(factor) and factor >= 0):
            raise ValueError(f"factor must be a finite non-negative number, got {factor}")
        self._weights[name] = self._full_weights[name] * factor

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset().union(*(t.needs() for n, t in self.terms.items() if self._weights[n] > 0))

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        metrics: dict[str, Tensor] = {}
        for name, term in self.terms.items():
            weight = self._weights[name]
            if weight == 0:
                continue
            value, term_metrics = term(batch)
            total = weight * value if total is None else total + weight * value
            metrics[f"loss/{name}"] = value.detach()
            metrics.update({f"{name}/{k}": v for k, v in term_metrics.items()})
        assert total is not None  # at least one weight is positive
        return total, metrics

    def extra_repr(self) -> str:
        return "weights=" + repr(self._weights)
