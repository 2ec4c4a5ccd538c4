"""Callbacks: named hooks into a training run, each with state that checkpoints keep."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ..recipes import Recipe

if TYPE_CHECKING:
    from .loop import Trainer

__all__ = ["Callback", "StepFunction", "Evaluation"]


class Callback:
    """Base of everything that joins a :class:`~ebmlib.training.Trainer`'s run: override the hooks you need.

    The trainer calls, in the order the callbacks were given:

    ====================================  ================================================================
    ``on_fit_start(trainer)``             :meth:`~ebmlib.training.Trainer.fit` begins (after a resume too)
    ``on_step_end(trainer, metrics)``     after every training step; ``metrics`` are device tensors (read
                                          them here and the step waits for the device)
    ``on_step_error(trainer, error)``     a step raised; return ``True`` if handled (the step is dropped)
    ``on_sync(trainer)``                  every process is at the same point and host reads are expected:
                                          before each metric read and each checkpoint
    ``on_log(trainer, row)``              a new row of :attr:`~ebmlib.training.Trainer.history` (floats)
    ``on_epoch_end(trainer)``             an epoch was completed
    ``on_evaluation(trainer, results)``   an evaluation finished (floats)
    ``on_save(trainer, path)``            a checkpoint was written
    ``on_fit_end(trainer)``               ``fit`` returns or raises
    ====================================  ================================================================

    :meth:`state_dict` is saved in every checkpoint under :attr:`state_key`
    and given back to :meth:`load_state_dict` on resume, so a callback with
    state (a schedule, an early stop, an average of weights) resumes exactly.

    Examples
    --------
    >>> class CountSteps(Callback):
    ...     def __init__(self):
    ...         self.steps = 0
    ...     def on_step_end(self, trainer, metrics):
    ...         self.steps += 1
    ...     def state_dict(self):
    ...         return {"steps": self.steps}
    ...     def load_state_dict(self, state):
    ...         self.steps = state["steps"]
    >>> counter = CountSteps()
    >>> counter.on_step_end(None, {})
    >>> counter.state_key, counter.state_dict()
    ('CountSteps', {'steps': 1})
    """

    @property
    def state_key(self) -> str:
        """The key of this callback's state in checkpoints; unique among a trainer's callbacks."""
        return type(self).__name__

    def on_fit_start(self, trainer: Trainer) -> None:
        """``fit`` begins."""

    def on_step_end(self, trainer: Trainer, metrics: Mapping[str, Tensor]) -> None:
        """A training step ended (``trainer.step`` counts it); ``metrics`` are device tensors."""

    def on_step_error(self, trainer: Trainer, error: Exception) -> bool:
        """A training step raised ``error``; return ``True`` if this callback handled it."""
        return False

    def on_sync(self, trainer: Trainer) -> None:
        """Every process is at the same point; reading device values is expected here."""

    def on_log(self, trainer: Trainer, row: Mapping[str, float]) -> None:
        """A row was added to ``trainer.history``."""

    def on_epoch_end(self, trainer: Trainer) -> None:
        """An epoch was completed (``trainer.epoch`` counts it)."""

    def on_evaluation(self, trainer: Trainer, results: Mapping[str, float]) -> None:
        """An evaluation finished."""

    def on_save(self, trainer: Trainer, path: pathlib.Path) -> None:
        """A checkpoint was written to ``path`` (by process 0)."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """``fit`` returns or raises."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of this callback (tensors, numbers, strings, containers)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


class StepFunction(Callback):
    """A plain function ``function(trainer, metrics)`` run as ``on_step_end``.

    The :class:`~ebmlib.training.Trainer` wraps every plain function in its
    ``callbacks`` in one. It has no state.

    Examples
    --------
    >>> seen = []
    >>> callback = StepFunction(lambda trainer, metrics: seen.append(sorted(metrics)))
    >>> callback.on_step_end(None, {"loss": 1.0})
    >>> seen, callback.state_key
    ([['loss']], 'StepFunction:<lambda>')
    """

    def __init__(self, function: Callable[[Trainer, Mapping[str, Tensor]], None]) -> None:
        self.function = function

    @property
    def state_key(self) -> str:
        return f"StepFunction:{getattr(self.function, '__name__', type(self.function).__name__)}"

    def on_step_end(self, trainer: Trainer, metrics: Mapping[str, Tensor]) -> None:
        self.function(trainer, metrics)


class Evaluation(Callback):
    """Run ``evaluate(recipe) -> dict of numbers`` every ``every`` steps and at the end of every epoch.

    Runs on process 0 only, in eval mode, with the training clock paused; the
    results (with ``step``) are kept in :attr:`results`, saved in checkpoints,
    and passed to every callback's ``on_evaluation``. A step is evaluated at
    most once: an epoch that ends on a multiple of ``every`` (or a resumed run
    that completes the epoch of an evaluated checkpoint) adds no second row.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(recipe) -> Mapping[str, float]``.
    every : int, optional
        Steps between evaluations (only at epoch ends if ``None``).

    Attributes
    ----------
    results : list of dict
        ``step`` and the results of each evaluation, as floats.

    Examples
    --------
    >>> evaluation = Evaluation(lambda recipe: {"score": 1.0}, every=100)
    >>> evaluation.results
    []
    """

    def __init__(self, evaluate: Callable[[Recipe], Mapping[str, Any]], every: int | None = None) -> None:
        if every is not None and every < 1:
            raise ValueError(f"eval_every must be a positive number of steps or None, got {every}")
        self.evaluate = evaluate
        self.every = every
        self.results: list[dict[str, float]] = []

    def on_step_end(self, trainer: Trainer, metrics: Mapping[str, Tensor]) -> None:
        if self.every is not None and trainer.step % self.every == 0:
            self.run_once(trainer)

    def on_epoch_end(self, trainer: Trainer) -> None:
        self.run_once(trainer)

    def run_once(self, trainer: Trainer) -> None:
        """:meth:`run`, unless the current step was evaluated already."""
        if not self.results or self.results[-1]["step"] != float(trainer.step):
            self.run(trainer)

    def run(self, trainer: Trainer) -> None:
        """Evaluate now (process 0 only) and tell the trainer's callbacks."""
        if trainer.process.rank != 0:
            return
        with trainer.clock.paused():
            trainer.recipe.eval()
            try:
                found = self.evaluate(trainer.recipe)
            finally:
                trainer.recipe.train()
        results = {"step": float(trainer.step), **{name: float(value) for name, value in found.items()}}
        self.results.append(results)
        trainer.notify_evaluation(results)

    def state_dict(self) -> dict[str, Any]:
        return {"results": [dict(r) for r in self.results]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.results = [dict(r) for r in state["results"]]
