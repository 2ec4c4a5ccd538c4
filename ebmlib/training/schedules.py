r"""Learning-rate schedules: the one writer of the optimizers' learning rates.

A schedule sets every parameter group's learning rate to

.. math::

    \text{lr} = \text{base\_lr} \times \text{scale} \times f(\text{step}, \text{spent}),

where ``base_lr`` is the group's learning rate when training started, ``step``
the number of optimizer steps done, ``spent`` the fraction of the training
budget spent (steps or time, whichever is further, as agreed by all processes),
and ``scale`` the product of the reductions asked for by
:meth:`~ebmlib.training.LearningRateSchedule.scale_by` (the
:class:`~ebmlib.training.DivergenceGuard` halves it after a recovery). As with
:class:`torch.optim.lr_scheduler.LRScheduler`, the learning rate of step ``k``
(0-based) is :math:`f(k, \cdot)`: set before the first step, and after each
step for the next. Nothing else writes a learning rate, so schedules and
recoveries compose instead of overwriting each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from .callbacks import Callback, TrainerView

__all__ = ["LearningRateSchedule", "Constant", "CosineDecay", "LinearWarmUp"]


class LearningRateSchedule(Callback):
    r"""Base of the schedules: subclasses give the factor :math:`f(\text{step}, \text{spent})`.

    Attributes
    ----------
    scale : float
        Product of the reductions asked for by :meth:`scale_by`.
    base_lrs : list of list of float or None
        Per optimizer and parameter group, the learning rates when training
        started (taken by :meth:`attach`, kept in checkpoints).

    Examples
    --------
    >>> import torch
    >>> class Halving(LearningRateSchedule):  # halve the lr every 10 steps
    ...     def factor(self, step, spent):
    ...         return 0.5 ** (step // 10)
    >>> optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> schedule = Halving()
    >>> schedule.attach([optimizer])
    >>> schedule.apply(step=25, spent=0.5)
    >>> optimizer.param_groups[0]["lr"]
    0.25
    >>> schedule.scale_by(0.5)  # a recovery: lower it, keep following the schedule
    >>> optimizer.param_groups[0]["lr"], schedule.get_last_lr()
    (0.125, [0.125])
    """

    def __init__(self) -> None:
        self.scale = 1.0
        self.base_lrs: list[list[float]] | None = None
        self.optimizers: list[torch.optim.Optimizer] = []
        self.last_position = (0, 0.0)

    def factor(self, step: int, spent: float) -> float:
        """The multiplier of ``base_lr`` for step ``step`` (0-based) with ``spent`` of the budget used."""
        return 1.0

    def attach(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        """Take charge of ``optimizers``' learning rates; their current values become ``base_lrs`` (unless loaded)."""
        groups = [[group["lr"] for group in optimizer.param_groups] for optimizer in optimizers]
        if self.base_lrs is not None and [len(g) for g in self.base_lrs] != [len(g) for g in groups]:
            saved = [len(g) for g in self.base_lrs]
            raise ValueError(f"{type(self).__name__} has base_lrs for parameter groups {saved} but the optimizers have "
                             f"{[len(g) for g in groups]}")
        self.optimizers = list(optimizers)
        if self.base_lrs is None:
            self.base_lrs = [[float(lr.item() if isinstance(lr, Tensor) else lr) for lr in g] for g in groups]

    def apply(self, step: int, spent: float) -> None:
        """Write every group's learning rate for step ``step`` with ``spent`` of the budget used."""
        if self.base_lrs is None:
            raise RuntimeError(f"{type(self).__name__}.apply before attach: no optimizers to set")
        self.last_position = (step, spent)
        factor = self.scale * self.factor(step, spent)
        for optimizer, base_lrs in zip(self.optimizers, self.base_lrs, strict=True):
            for group, base_lr in zip(optimizer.param_groups, base_lrs, strict=True):
                if isinstance(group["lr"], Tensor):  # a tensor lr (capturable optimizers) is updated in place
                    group["lr"].fill_(base_lr * factor)
                else:
                    group["lr"] = base_lr * factor

    def scale_by(self, factor: float) -> None:
        """Multiply every learning rate by ``factor`` from now on (and rewrite the current ones)."""
        if not factor > 0:
            raise ValueError(f"factor must be positive, got {factor}")
        self.scale *= factor
        self.reapply()

    def reapply(self) -> None:
        """Write the current learning rates again, e.g. after an optimizer's state (with its own) was loaded."""
        if self.base_lrs is not None and self.optimizers:
            self.apply(*self.last_position)

    def get_last_lr(self) -> list[float]:
        """The learning rates last written, one per parameter group of every optimizer in turn."""
        return [float(group["lr"]) for optimizer in self.optimizers for group in optimizer.param_groups]

    # ------------------------------------------------------------------ as a callback
    def on_fit_start(self, trainer: TrainerView) -> None:
        self.attach(trainer.recipe.optimizers())
        self.apply(trainer.step, trainer.budget_spent())

    def on_step_end(self, trainer: TrainerView, metrics: Mapping[str, Tensor]) -> None:
        self.apply(trainer.step, trainer.budget_spent())

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "base_lrs": self.base_lrs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.scale = float(state["scale"])
        self.base_lrs = None if state["base_lrs"] is None else [list(map(float, g)) for g in state["base_lrs"]]

    @property
    def state_key(self) -> str:
        return "LearningRateSchedule"  # one writer of the lr per trainer, whatever its kind


class Constant(LearningRateSchedule):
    """The learning rates the optimizers were built with (times ``scale``): :math:`f = 1`.

    The :class:`~ebmlib.training.Trainer`'s schedule when none is given.

    Examples
    --------
    >>> Constant().factor(step=1000, spent=0.9)
    1.0
    """


class CosineDecay(LearningRateSchedule):
    r"""Cosine decay over the budget: :math:`f = r + (1 - r)\,\tfrac{1}{2}\big(1 + \cos(\pi\,\text{spent})\big)`.

    ``spent`` is the fraction of the training budget used (steps or time,
    whichever is further), so the decay ends with the run however it is bounded.

    Parameters
    ----------
    final_factor : float
        :math:`r`, the factor at the end of the budget, in ``[0, 1]``.

    Examples
    --------
    >>> schedule = CosineDecay(final_factor=0.1)
    >>> schedule.factor(0, 0.0), round(schedule.factor(50, 0.5), 3), schedule.factor(100, 1.0)
    (1.0, 0.55, 0.1)
    """

    def __init__(self, final_factor: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= final_factor <= 1.0:
            raise ValueError(f"final_factor must lie in [0, 1], got {final_factor}")
        self.final_factor = final_factor

    def factor(self, step: int, spent: float) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(spent, 0.0), 1.0)))
        return self.final_factor + (1.0 - self.final_factor) * cosine


class LinearWarmUp(LearningRateSchedule):
    r"""Linear warm-up over ``steps`` steps, then ``then``.

    .. math::

        f(k, \cdot) = \min\Big(1, \frac{k + 1}{\text{steps}}\Big)\, f_\text{then}(k, \cdot).

    Parameters
    ----------
    steps : int
        Steps of the warm-up (step ``k`` gets ``(k + 1) / steps``).
    then : LearningRateSchedule, optional
        The schedule whose factor multiplies the warm-up's (default:
        :class:`Constant`). Only its factor is used: this object is the one
        writer of the learning rate.

    Examples
    --------
    >>> schedule = LinearWarmUp(4, then=CosineDecay())
    >>> [round(schedule.factor(k, k / 100), 3) for k in (0, 1, 3, 50)]
    [0.25, 0.5, 0.998, 0.5]
    """

    def __init__(self, steps: int, then: LearningRateSchedule | None = None) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"steps must be a positive number of warm-up steps, got {steps}")
        self.steps = steps
        self.then = Constant() if then is None else then

    def factor(self, step: int, spent: float) -> float:
        return min(1.0, (step + 1) / self.steps) * self.then.factor(step, spent)
