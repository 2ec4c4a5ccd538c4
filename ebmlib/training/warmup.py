r"""Switch loss terms on gradually: a warm-up of some weights of a :class:`~ebmlib.losses.WeightedSum`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from torch import Tensor

from ..losses import WeightedSum
from .callbacks import Callback

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["TermWarmUp"]


class TermWarmUp(Callback):
    r"""Weight some terms of a :class:`~ebmlib.losses.WeightedSum` by a ramp of the step.

    For step :math:`k` (optimizer steps done), a warmed-up term's weight is

    .. math::

        w_k = w \cdot \operatorname{clip}\Big(\frac{k - \text{start}}{\text{end} - \text{start}}, 0, 1\Big),

    so 0 until ``start`` and its full weight :math:`w` from ``end`` on; the
    other terms keep theirs. A term of weight 0 is left out of
    :meth:`~ebmlib.losses.WeightedSum.needs`, so a recipe skips what only it
    reads: warming up JEM's generative terms (``p_x``, ``energy_l2``) trains
    a plain classifier, without sampling, for the first ``start`` steps. Its
    gradients at noise then point towards digits of one class or another, and
    the first chains leave the noise instead of being held there while the
    contrastive term makes the noise a flat plateau of high energy.

    The weights follow the trainer's step, so a resumed run continues the ramp
    where it stopped; the full weights are the loss's when the warm-up is made.

    Parameters
    ----------
    loss : WeightedSum
        The loss whose weights are ramped (the recipe's).
    terms : sequence of str
        Names of the terms to warm up.
    start, end : int
        Steps where the ramp begins and reaches the full weight, ``0 <= start <= end``.

    Raises
    ------
    ValueError
        For a name that is not a term of ``loss`` or steps out of order.

    Examples
    --------
    >>> from ebmlib.recipes import jem_loss
    >>> loss = jem_loss(p_x_weight=1.0, regularization_weight=0.01)
    >>> warm_up = TermWarmUp(loss, ["p_x", "energy_l2"], start=200, end=600)
    >>> warm_up.apply(step=0)
    >>> loss.weights["p_y_given_x"], loss.weights["p_x"], sorted(k.__name__ for k in loss.needs())
    (1.0, 0.0, ['Classification'])
    >>> warm_up.apply(step=400)
    >>> loss.weights["p_x"], loss.weights["energy_l2"]
    (0.5, 0.005)
    """

    def __init__(self, loss: WeightedSum, terms: Sequence[str], start: int, end: int) -> None:
        if not isinstance(loss, WeightedSum):
            raise TypeError(f"TermWarmUp ramps the weights of a WeightedSum, got {type(loss).__name__}")
        unknown = [name for name in terms if name not in loss.weights]
        if unknown or not terms:
            raise ValueError(f"terms must name terms of the loss ({', '.join(loss.weights)}), got {list(terms)}")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
            raise ValueError(f"need integer steps 0 <= start <= end, got start={start!r}, end={end!r}")
        self.loss = loss
        self.full_weights = {name: loss.weights[name] for name in terms}
        self.start, self.end = start, end

    def factor(self, step: int) -> float:
        """The ramp's value at ``step``, in ``[0, 1]``."""
        if step >= self.end:
            return 1.0
        if step <= self.start:
            return 0.0
        return (step - self.start) / (self.end - self.start)

    def apply(self, step: int) -> None:
        """Set the warmed-up terms' weights for ``step``."""
        factor = self.factor(step)
        for name, weight in self.full_weights.items():
            self.loss.weights[name] = weight * factor

    def on_fit_start(self, trainer: Trainer) -> None:
        self.apply(trainer.step)

    def on_step_end(self, trainer: Trainer, metrics: Mapping[str, Tensor]) -> None:
        self.apply(trainer.step)
