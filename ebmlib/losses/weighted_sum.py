"""Weighted composition of losses that share one EnergyBatch."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from .base import EnergyBatch, Loss, LossInput


class WeightedSum(Loss):
    r""":math:`\mathcal{L} = \sum_i w_i \mathcal{L}_i` over named terms.

    Every term reads the same :class:`EnergyBatch`, so no term recomputes a
    forward pass. Terms with weight 0 are skipped (and their inputs not needed).
    Metrics: ``loss/<name>`` (each unweighted term) and ``<name>/<metric>``.

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
        self.weights = {name: float(weight) for name, (weight, _) in terms.items()}

    def needs(self) -> frozenset[type[LossInput]]:
        return frozenset().union(*(t.needs() for n, t in self.terms.items() if self.weights[n] > 0))

    def forward(self, batch: EnergyBatch) -> tuple[Tensor, dict[str, Tensor]]:
        total: Tensor | None = None
        metrics: dict[str, Tensor] = {}
        for name, term in self.terms.items():
            weight = self.weights[name]
            if weight == 0:
                continue
            value, term_metrics = term(batch)
            total = weight * value if total is None else total + weight * value
            metrics[f"loss/{name}"] = value.detach()
            metrics.update({f"{name}/{k}": v for k, v in term_metrics.items()})
        assert total is not None  # at least one weight is positive
        return total, metrics

    def extra_repr(self) -> str:
        return "weights=" + repr(self.weights)
