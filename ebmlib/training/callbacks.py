"""Callbacks: named hooks into a training run, each with state that checkpoints keep."""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from ..recipes import Recipe
from .budget import Budget, Stopwatch
from .distributed import ProcessInfo

__all__ = ["Callback", "StepFunction", "Evaluation", "TrainerView", "LearningRateOwner"]


class LearningRateOwner(Protocol):
    """What a callback may ask of the one writer of the learning rates, ``trainer.lr_schedule``.

    :class:`~ebmlib.training.LearningRateSchedule` implements it; a callback lowers
    a learning rate only through :meth:`scale_by`.

    Examples
    --------
    >>> from ebmlib.training import Constant
    >>> schedule: LearningRateOwner = Constant()
    >>> schedule.scale_by(0.5)  # no optimizer attached yet: only the scale changes
    >>> schedule.scale
    0.5
    """

    @property
    def scale(self) -> float:
        """The product of the reductions asked for so far."""

    def scale_by(self, factor: float) -> None:
        """Multiply every learning rate by ``factor`` from now on."""

    def reapply(self) -> None:
        """Write the current learning rates again (after an optimizer's state, with its own, was loaded)."""


class TrainerView(Protocol):
    """What a callback may read of the :class:`~ebmlib.training.Trainer` that calls its hooks, and ask of it.

    The hooks of :class:`~ebmlib.training.Callback` are typed against this, not the Trainer, so
    the training modules need not import the loop; the Trainer implements it.

    Attributes
    ----------
    step, epoch : int
        Steps and complete epochs done so far.
    recipe : Recipe
    device : torch.device
    generator : torch.Generator
        The training generator, on ``device``.
    process : ProcessInfo
        Rank and world size.
    history : list of dict
        The rows logged so far (floats), to read only.
    evaluations : list of dict
        ``step`` and the results of each evaluation, to read only.
    elapsed_seconds : float
        Training time so far (agreed by all processes).
    lr_schedule : LearningRateOwner
        The one writer of the learning rates.
    budget : Budget
        The current ``fit``'s budget.
    clock : Stopwatch
        The training clock (paused for evaluations).

    Examples
    --------
    A plain function for ``Trainer(callbacks=[...])``, typed against the view; any
    object with the attributes it reads will do:

    >>> from types import SimpleNamespace
    >>> steps = []
    >>> def record(trainer: TrainerView, metrics: Mapping[str, Tensor]) -> None:
    ...     if trainer.process.rank == 0:
    ...         steps.append(trainer.step)  # the metrics stay on the device (read them in on_log)
    >>> record(SimpleNamespace(step=200, process=ProcessInfo(0, 0, 1)), {"loss": torch.tensor(0.5)})
    >>> steps
    [200]
    """

    @property
    def step(self) -> int: ...
    @property
    def epoch(self) -> int: ...
    @property
    def recipe(self) -> Recipe: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def generator(self) -> torch.Generator: ...
    @property
    def process(self) -> ProcessInfo: ...
    @property
    def history(self) -> Sequence[Mapping[str, float]]: ...
    @property
    def evaluations(self) -> Sequence[Mapping[str, float]]: ...
    @property
    def elapsed_seconds(self) -> float: ...
    @property
    def lr_schedule(self) -> LearningRateOwner: ...
    @property
    def budget(self) -> Budget: ...
    @property
    def clock(self) -> Stopwatch: ...

    def budget_spent(self) -> float:
        """The fraction of the current ``fit``'s budget used (the same on every process)."""

    def notify_evaluation(self, results: Mapping[str, float]) -> None:
        """Pass an evaluation's results to every callback's ``on_evaluation``."""


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

    def on_fit_start(self, trainer: TrainerView) -> None:
        """``fit`` begins."""

    def on_step_end(self, trainer: TrainerView, metrics: Mapping[str, Tensor]) -> None:
        """A training step ended (``trainer.step`` counts it); ``metrics`` are device tensors."""

    def on_step_error(self, trainer: TrainerView, error: Exception) -> bool:
        """A training step raised ``error``; return ``True`` if this callback handled it."""
        return False

    def on_sync(self, trainer: TrainerView) -> None:
        """Every process is at the same point; reading device values is expected here."""

    def on_log(self, trainer: TrainerView, row: Mapping[str, float]) -> None:
        """A row was added to ``trainer.history``."""

    def on_epoch_end(self, trainer: TrainerView) -> None:
        """An epoch was completed (``trainer.epoch`` counts it)."""

    def on_evaluation(self, trainer: TrainerView, results: Mapping[str, float]) -> None:
        """An evaluation finished."""

    def on_save(self, trainer: TrainerView, path: pathlib.Path) -> None:
        """A checkpoint was written to ``path`` (by process 0)."""

    def on_fit_end(self, trainer: TrainerView) -> None:
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

    def __init__(self, function: Callable[[TrainerView, Mapping[str, Tensor]], None]) -> None:
        self.function = function

    @property
    def state_key(self) -> str:
        return f"StepFunction:{getattr(self.function, '__name__', type(self.function).__name__)}"

    def on_step_end(self, trainer: TrainerView, metrics: Mapping[str, Tensor]) -> None:
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

    def on_step_end(self, trainer: TrainerView, metrics: Mapping[str, Tensor]) -> None:
        if self.every is not None and trainer.step % self.every == 0:
            self.run_once(trainer)

    def on_epoch_end(self, trainer: TrainerView) -> None:
        self.run_once(trainer)

    def run_once(self, trainer: TrainerView) -> None:
        """:meth:`run`, unless the current step was evaluated already."""
        if not self.results or self.results[-1]["step"] != float(trainer.step):
            self.run(trainer)

    def run(self, trainer: TrainerView) -> None:
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
