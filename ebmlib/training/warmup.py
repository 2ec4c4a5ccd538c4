r"""Switch loss terms on gradually: a warm-up of some weights of a :class:`~ebmlib.losses.WeightedSum`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from torch import Tensor

from .callbacks import Callback, TrainerView

__all__ = ["TermWarmUp", "ScalableWeights"]


@runtime_checkable
class ScalableWeights(Protocol):
    r"""What :class:`~ebmlib.training.TermWarmUp` needs of a loss: named terms whose weights it may scale.

    The loss keeps the full weights and writes its weights itself (it is their
    one writer); a schedule only sets a factor per term, so term :math:`i` weighs
    :math:`s_i \bar w_i`. :class:`~ebmlib.losses.WeightedSum` implements it; the
    training layer names no loss class.

    Examples
    --------
    >>> from ebmlib.recipes import jem_loss
    >>> isinstance(jem_loss(), ScalableWeights)
    True
    """

    @property
    def full_weights(self) -> Mapping[str, float]:
        """Each term's weight as given (unscaled), by name."""

    def set_weight_scale(self, name: str, factor: float) -> None:
        """Weigh term ``name`` by ``factor`` times its full weight from now on."""


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
    where it stopped. The loss keeps the full weights and writes the weights
    (:meth:`~ebmlib.losses.WeightedSum.set_weight_scale`); the warm-up only sets
    the ramp's factor, so it is no second writer of them.

    Parameters
    ----------
    loss : WeightedSum
        The loss whose weights are ramped (the recipe's); any :class:`~ebmlib.training.warmup.ScalableWeights`.
    terms : sequence of str
        Names of the terms to warm up.
    start, end : int
        Steps where the ramp begins and reaches the full weight, ``0 <= start <= end``.

    Raises
    ------
    ValueError
        For a name that is not a term of ``loss`` or steps out of order.
    TypeError
        If ``loss`` cannot scale its terms' weights (is no :class:`~ebmlib.training.warmup.ScalableWeights`).

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

    def __init__(self, loss: ScalableWeights, terms: Sequence[str], start: int, end: int) -> None:
        if not isinstance(loss, ScalableWeights):
            raise TypeError("TermWarmUp ramps the weights of a WeightedSum (a loss with full_weights and "
                            f"set_weight_scale), got {type(loss).__name__}")
        unknown = [name for name in terms if name not in loss.full_weights]
        if unknown or not terms:
            raise ValueError(f"terms must name terms of the loss ({', '.join(loss.full_weights)}), got {list(terms)}")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
            raise ValueError(f"need integer steps 0 <= start <= end, got start={start!r}, end={end!r}")
        self.loss = loss
        self.terms = tuple(terms)
        self.start, self.end = start, end

    def factor(self, step: int) -> float:
        """The ramp's value at ``step``, in ``[0, 1]``."""
        if step >= self.end:
            return 1.0
        if step <= self.start:
            return 0.0
        return (step - self.start) / (self.end - self.start)

    def apply(self, step: int) -> None:
        """Scale the warmed-up terms' weights for ``step`` (through the loss's ``set_weight_scale``)."""
        factor = self.factor(step)
        for name in self.terms:
            self.loss.set_weight_scale(name, factor)

    def on_fit_start(self, trainer: TrainerView) -> None:
        self.apply(trainer.step)

    def on_step_end(self, trainer: TrainerView, metrics: Mapping[str, Tensor]) -> None:
        self.apply(trainer.step)
