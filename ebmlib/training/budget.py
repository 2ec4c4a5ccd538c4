"""How long and how fast: the training budget, the training clock and the windows of metrics between reads."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from .distributed import all_reduce_mean

__all__ = ["Budget", "Stopwatch", "MetricWindow"]


@dataclass(frozen=True)
class Budget:
    """How long :meth:`Trainer.fit` trains: totals of epochs, steps and seconds (any that are given).

    Examples
    --------
    >>> budget = Budget(epochs=2, max_steps=None, max_seconds=60.0, steps_per_epoch=10)
    >>> budget.total_steps, budget.spent(step=5, seconds=30.0), budget.exhausted(20, 2, 0.0)
    (20, 0.5, True)
    """

    epochs: int | None
    max_steps: int | None
    max_seconds: float | None
    steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        if self.epochs is None and self.max_steps is None and self.max_seconds is None:
            raise ValueError("fit needs a budget: pass epochs, max_steps or max_seconds")
        for name in ("epochs", "max_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"{name} must be a non-negative integer or None, got {value!r}")
        if self.max_seconds is not None and not self.max_seconds >= 0:
            raise ValueError(f"max_seconds must be a non-negative number or None, got {self.max_seconds}")

    @property
    def total_steps(self) -> int | None:
        """The step budget, from ``max_steps`` and ``epochs`` (``None`` if neither bounds it)."""
        totals = [t for t in (self.max_steps, None if self.epochs is None or self.steps_per_epoch is None
                              else self.epochs * self.steps_per_epoch) if t is not None]
        return min(totals) if totals else None

    def exhausted(self, step: int, epoch: int, seconds: float) -> bool:
        """Whether training is done after ``step`` steps and ``epoch`` epochs in ``seconds``."""
        return ((self.epochs is not None and epoch >= self.epochs)
                or (self.max_steps is not None and step >= self.max_steps)
                or (self.max_seconds is not None and seconds >= self.max_seconds))

    def spent(self, step: int, seconds: float) -> float:
        """The fraction of the budget used, in ``[0, 1]``: of the steps or of the time, whichever is further."""
        total = self.total_steps
        fractions = [step / total if total else 0.0, seconds / self.max_seconds if self.max_seconds else 0.0]
        return min(max(fractions), 1.0)


class Stopwatch:
    """Seconds of training time: runs while started, stops for evaluations and checkpoints.

    Examples
    --------
    >>> clock = Stopwatch(seconds=10.0)
    >>> clock.start()
    >>> with clock.paused():
    ...     clock.running
    False
    >>> clock.running, clock.seconds >= 10.0
    (True, True)
    """

    def __init__(self, seconds: float = 0.0) -> None:
        self._seconds = seconds
        self._started: float | None = None

    @property
    def running(self) -> bool:
        return self._started is not None

    @property
    def seconds(self) -> float:
        """Total seconds so far."""
        return self._seconds + (time.perf_counter() - self._started if self._started is not None else 0.0)

    @seconds.setter
    def seconds(self, value: float) -> None:
        self._seconds = value
        if self._started is not None:
            self._started = time.perf_counter()

    def start(self) -> None:
        if self._started is None:
            self._started = time.perf_counter()

    def stop(self) -> None:
        self._seconds = self.seconds
        self._started = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the clock inside the block (and restart it after, if it was running)."""
        was_running = self.running
        self.stop()
        try:
            yield
        finally:
            if was_running:
                self.start()


class MetricWindow:
    """Metric sums over the steps since the last read, kept on the device; ``means()`` reads them once.

    Parameters
    ----------
    seconds : float
        The training clock when the window opened.

    Examples
    --------
    >>> window = MetricWindow(seconds=0.0)
    >>> window.add({"loss": torch.tensor(1.0)})
    >>> window.add({"loss": torch.tensor(3.0)})
    >>> window.means(), window.steps
    ({'loss': 2.0}, 2)
    """

    def __init__(self, seconds: float) -> None:
        self.sums: dict[str, Tensor] = {}
        self.steps = 0
        self.start_seconds = seconds

    def add(self, metrics: Mapping[str, Tensor]) -> None:
        self.steps += 1
        for name, value in metrics.items():
            value = value.detach().float()
            self.sums[name] = self.sums[name] + value if name in self.sums else value

    def means(self) -> dict[str, float]:
        """Means over the window and over processes: the one host read."""
        names = sorted(self.sums)
        if not names:
            return {}
        values = all_reduce_mean(torch.stack([self.sums[n] for n in names]) / self.steps, "averaging the metrics")
        return dict(zip(names, values.tolist(), strict=True))
